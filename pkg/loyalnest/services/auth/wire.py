"""Auth's API messages (loyalnest.auth.v1) <-> its records, sessions and tokens."""

from __future__ import annotations

from loyalnest.gen.auth.v1 import auth_pb2
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.auth.domain import (
    AdminUserRecord,
    ImpersonationRecord,
    MerchantRecord,
    ShopTokenRecord,
)
from loyalnest.services.auth.sessions import IssuedSession

STATUSES = {
    "active": auth_pb2.MERCHANT_STATUS_ACTIVE,
    "uninstalled": auth_pb2.MERCHANT_STATUS_UNINSTALLED,
}


def merchant_proto(merchant: MerchantRecord) -> auth_pb2.Merchant:
    return auth_pb2.Merchant(
        merchant_id=merchant.merchant_id,
        shop_domain=merchant.shop_domain,
        status=STATUSES.get(merchant.status, auth_pb2.MERCHANT_STATUS_UNSPECIFIED),
        scopes=list(merchant.scopes),
        create_time=timestamp(merchant.created_at),
    )


def token_pair(issued: IssuedSession) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        token_type="Bearer",
        access_token=issued.access.token,
        access_token_expire_time=timestamp(issued.access.expires_at),
        refresh_token=issued.refresh_token,
        refresh_token_expire_time=timestamp(issued.refresh_expires_at),
        session_id=issued.session_id,
    )


def admin_user_proto(user: AdminUserRecord) -> auth_pb2.AdminUser:
    return auth_pb2.AdminUser(
        user_id=user.user_id,
        email=user.email,
        merchant_id=user.merchant_id or "",
        permissions=list(user.permissions),
        mfa_enabled=user.mfa_enabled,
        create_time=timestamp(user.created_at),
    )


def impersonation_proto(record: ImpersonationRecord) -> auth_pb2.ImpersonationSession:
    return auth_pb2.ImpersonationSession(
        session_id=record.session_id,
        admin_id=record.admin_id,
        merchant_id=record.merchant_id,
        reason=record.reason,
        token_id=record.token_id,
        create_time=timestamp(record.created_at),
        expire_time=timestamp(record.expires_at),
        end_time=optional_timestamp(record.ended_at),
    )


def shop_token_proto(record: ShopTokenRecord) -> auth_pb2.GetShopAccessTokenResponse:
    # Handed out only while installed (ShopTokens refuses others): the token is there.
    assert record.access_token is not None
    return auth_pb2.GetShopAccessTokenResponse(
        shop=record.shop_domain,
        access_token=record.access_token,
        scopes=list(record.scopes),
        expire_time=optional_timestamp(record.expires_at),
    )
