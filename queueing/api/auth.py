"""Token endpoints and the JSON parser of the API, hardened (docs/api.md, Security).

- Login (POST /api/token/) is throttled per client address *and* per account, so
  changing addresses does not reset an attacker's budget against one account; the client
  address is REMOTE_ADDR unless TRUSTED_PROXY_COUNT proxies are declared (DRF's
  NUM_PROXIES), so an X-Forwarded-For header alone changes nothing.
- Refresh (POST /api/token/refresh/) rotates the refresh token and blacklists the old
  one; a token of a deleted user, or issued before the user's password changed, is a 401.

The JSON parser that bounds request bodies is queueing/api/parsers.py.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from queueing.api.throttles import LoginAccountThrottle, LoginAddressThrottle


class LoginView(TokenObtainPairView):
    throttle_classes = [LoginAddressThrottle, LoginAccountThrottle]


class RefreshView(TokenRefreshView):
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self._check_account(request.data.get("refresh") if isinstance(request.data, dict) else None)
        try:
            return super().post(request, *args, **kwargs)
        except ObjectDoesNotExist:
            raise AuthenticationFailed("the token's user no longer exists") from None

    @staticmethod
    def _check_account(raw: object) -> None:
        """The refresh token's user exists, is active, and has not changed password since
        (simplejwt checks that claim for access tokens only)."""
        if not isinstance(raw, str):
            return  # the serializer answers the missing or malformed field
        try:
            token = RefreshToken(raw)  # type: ignore[arg-type]
        except TokenError:
            return  # invalid or expired: the view's own answer (401)
        user = (
            get_user_model()
            .objects.filter(**{api_settings.USER_ID_FIELD: token.get(api_settings.USER_ID_CLAIM)})
            .first()
        )
        if user is None or not user.is_active:
            raise AuthenticationFailed("the token's user no longer exists or is inactive")
        claim = api_settings.REVOKE_TOKEN_CLAIM
        if api_settings.CHECK_REVOKE_TOKEN and token.get(claim) != get_md5_hash_password(
            user.password
        ):
            raise AuthenticationFailed("the password changed after this token was issued")
