"""The Quart-trio front end: YClients redirect and webhook, onboarding websocket and REST, admin API,
status and metrics, and (in dev) the doubles."""

from ._app import create_app
from ._http import ApiError, fail
from ._services import Counters, Services
from ._tokens import OnboardingClaims, TokenError, mint_onboarding_token, verify_onboarding_token

__all__ = [
    "ApiError",
    "Counters",
    "OnboardingClaims",
    "Services",
    "TokenError",
    "create_app",
    "fail",
    "mint_onboarding_token",
    "verify_onboarding_token",
]
