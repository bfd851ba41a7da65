from accounts.selectors import user_capabilities


def capabilities(request) -> dict:
    """The signed-in user's capabilities, for showing only the navigation they may use."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"caps": frozenset()}
    return {"caps": frozenset(cap.value for cap in user_capabilities(user=user))}
