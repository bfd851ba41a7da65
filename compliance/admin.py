# Nothing of the compliance app is registered in the Django admin, on purpose: the admin opens
# to superusers, and separation of duties says that only compliance officers (a capability that
# comes from roles, never from is_superuser) read the query log. Officers use /compliance/.
