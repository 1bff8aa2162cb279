import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MerchantStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MERCHANT_STATUS_UNSPECIFIED: _ClassVar[MerchantStatus]
    MERCHANT_STATUS_ACTIVE: _ClassVar[MerchantStatus]
    MERCHANT_STATUS_UNINSTALLED: _ClassVar[MerchantStatus]
MERCHANT_STATUS_UNSPECIFIED: MerchantStatus
MERCHANT_STATUS_ACTIVE: MerchantStatus
MERCHANT_STATUS_UNINSTALLED: MerchantStatus

class TokenPair(_message.Message):
    __slots__ = ("token_type", "access_token", "access_token_expire_time", "refresh_token", "refresh_token_expire_time", "session_id")
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    token_type: str
    access_token: str
    access_token_expire_time: _timestamp_pb2.Timestamp
    refresh_token: str
    refresh_token_expire_time: _timestamp_pb2.Timestamp
    session_id: str
    def __init__(self, token_type: _Optional[str] = ..., access_token: _Optional[str] = ..., access_token_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., refresh_token_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class Merchant(_message.Message):
    __slots__ = ("merchant_id", "shop_domain", "status", "scopes", "create_time")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    shop_domain: str
    status: MerchantStatus
    scopes: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., shop_domain: _Optional[str] = ..., status: _Optional[_Union[MerchantStatus, str]] = ..., scopes: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("shop", "timestamp", "hmac", "host", "embedded", "locale", "session", "id_token")
    SHOP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    HMAC_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    shop: str
    timestamp: str
    hmac: str
    host: str
    embedded: str
    locale: str
    session: str
    id_token: str
    def __init__(self, shop: _Optional[str] = ..., timestamp: _Optional[str] = ..., hmac: _Optional[str] = ..., host: _Optional[str] = ..., embedded: _Optional[str] = ..., locale: _Optional[str] = ..., session: _Optional[str] = ..., id_token: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("authorize_url", "state", "state_expire_time")
    AUTHORIZE_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    authorize_url: str
    state: str
    state_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, authorize_url: _Optional[str] = ..., state: _Optional[str] = ..., state_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteLoginRequest(_message.Message):
    __slots__ = ("code", "hmac", "host", "shop", "state", "timestamp")
    CODE_FIELD_NUMBER: _ClassVar[int]
    HMAC_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SHOP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    code: str
    hmac: str
    host: str
    shop: str
    state: str
    timestamp: str
    def __init__(self, code: _Optional[str] = ..., hmac: _Optional[str] = ..., host: _Optional[str] = ..., shop: _Optional[str] = ..., state: _Optional[str] = ..., timestamp: _Optional[str] = ...) -> None: ...

class CompleteLoginResponse(_message.Message):
    __slots__ = ("merchant", "tokens", "created")
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    merchant: Merchant
    tokens: TokenPair
    created: bool
    def __init__(self, merchant: _Optional[_Union[Merchant, _Mapping]] = ..., tokens: _Optional[_Union[TokenPair, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class RefreshTokenRequest(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class RefreshTokenResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: TokenPair
    def __init__(self, tokens: _Optional[_Union[TokenPair, _Mapping]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token", "token_id", "reason")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    reason: str
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("token_id", "expire_time", "session_id")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    expire_time: _timestamp_pb2.Timestamp
    session_id: str
    def __init__(self, token_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JsonWebKey(_message.Message):
    __slots__ = ("kty", "crv", "x", "kid", "use", "alg")
    KTY_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str
    def __init__(self, kty: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., kid: _Optional[str] = ..., use: _Optional[str] = ..., alg: _Optional[str] = ...) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[JsonWebKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[JsonWebKey, _Mapping]]] = ...) -> None: ...

class ValidateTokenRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class TokenClaims(_message.Message):
    __slots__ = ("subject", "merchant_id", "user_id", "permissions", "token_id", "token_type", "session_id", "actor_id", "issuer", "audience", "key_id", "issue_time", "expire_time")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    subject: str
    merchant_id: str
    user_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    token_id: str
    token_type: str
    session_id: str
    actor_id: str
    issuer: str
    audience: str
    key_id: str
    issue_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, subject: _Optional[str] = ..., merchant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., token_id: _Optional[str] = ..., token_type: _Optional[str] = ..., session_id: _Optional[str] = ..., actor_id: _Optional[str] = ..., issuer: _Optional[str] = ..., audience: _Optional[str] = ..., key_id: _Optional[str] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ValidateTokenResponse(_message.Message):
    __slots__ = ("claims",)
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    claims: TokenClaims
    def __init__(self, claims: _Optional[_Union[TokenClaims, _Mapping]] = ...) -> None: ...

class IssueServiceTokenRequest(_message.Message):
    __slots__ = ("service", "merchant_id", "permissions", "timestamp", "nonce", "signature")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    service: str
    merchant_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    timestamp: int
    nonce: str
    signature: str
    def __init__(self, service: _Optional[str] = ..., merchant_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., timestamp: _Optional[int] = ..., nonce: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class IssueServiceTokenResponse(_message.Message):
    __slots__ = ("token_type", "access_token", "expire_time", "permissions", "audiences")
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    token_type: str
    access_token: str
    expire_time: _timestamp_pb2.Timestamp
    permissions: _containers.RepeatedScalarFieldContainer[str]
    audiences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token_type: _Optional[str] = ..., access_token: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., permissions: _Optional[_Iterable[str]] = ..., audiences: _Optional[_Iterable[str]] = ...) -> None: ...

class ValidateMerchantRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class ValidateMerchantResponse(_message.Message):
    __slots__ = ("merchant",)
    MERCHANT_FIELD_NUMBER: _ClassVar[int]
    merchant: Merchant
    def __init__(self, merchant: _Optional[_Union[Merchant, _Mapping]] = ...) -> None: ...

class GetShopAccessTokenRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetShopAccessTokenResponse(_message.Message):
    __slots__ = ("shop", "access_token", "expire_time", "scopes")
    SHOP_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    shop: str
    access_token: str
    expire_time: _timestamp_pb2.Timestamp
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shop: _Optional[str] = ..., access_token: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueStaffSessionRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class IssueStaffSessionResponse(_message.Message):
    __slots__ = ("tokens", "role_id", "permissions")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    tokens: TokenPair
    role_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tokens: _Optional[_Union[TokenPair, _Mapping]] = ..., role_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ...) -> None: ...

class AdminUser(_message.Message):
    __slots__ = ("user_id", "email", "merchant_id", "permissions", "mfa_enabled", "create_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    MFA_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    merchant_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    mfa_enabled: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., merchant_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., mfa_enabled: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAdminUserRequest(_message.Message):
    __slots__ = ("email", "password", "permissions", "merchant_id")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    merchant_id: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., merchant_id: _Optional[str] = ...) -> None: ...

class CreateAdminUserResponse(_message.Message):
    __slots__ = ("user", "enrollment_token", "enrollment_token_expire_time")
    USER_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    user: AdminUser
    enrollment_token: str
    enrollment_token_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, user: _Optional[_Union[AdminUser, _Mapping]] = ..., enrollment_token: _Optional[str] = ..., enrollment_token_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AdminLoginRequest(_message.Message):
    __slots__ = ("email", "password")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class AdminLoginResponse(_message.Message):
    __slots__ = ("mfa_token", "mfa_token_expire_time", "mfa_enrolled")
    MFA_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MFA_TOKEN_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    MFA_ENROLLED_FIELD_NUMBER: _ClassVar[int]
    mfa_token: str
    mfa_token_expire_time: _timestamp_pb2.Timestamp
    mfa_enrolled: bool
    def __init__(self, mfa_token: _Optional[str] = ..., mfa_token_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mfa_enrolled: _Optional[bool] = ...) -> None: ...

class EnrollMfaRequest(_message.Message):
    __slots__ = ("mfa_token", "enrollment_token")
    MFA_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    mfa_token: str
    enrollment_token: str
    def __init__(self, mfa_token: _Optional[str] = ..., enrollment_token: _Optional[str] = ...) -> None: ...

class EnrollMfaResponse(_message.Message):
    __slots__ = ("secret", "provisioning_uri")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PROVISIONING_URI_FIELD_NUMBER: _ClassVar[int]
    secret: str
    provisioning_uri: str
    def __init__(self, secret: _Optional[str] = ..., provisioning_uri: _Optional[str] = ...) -> None: ...

class VerifyMfaRequest(_message.Message):
    __slots__ = ("mfa_token", "code")
    MFA_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    mfa_token: str
    code: str
    def __init__(self, mfa_token: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class VerifyMfaResponse(_message.Message):
    __slots__ = ("tokens", "user")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    tokens: TokenPair
    user: AdminUser
    def __init__(self, tokens: _Optional[_Union[TokenPair, _Mapping]] = ..., user: _Optional[_Union[AdminUser, _Mapping]] = ...) -> None: ...

class ImpersonationSession(_message.Message):
    __slots__ = ("session_id", "admin_id", "merchant_id", "reason", "token_id", "create_time", "expire_time", "end_time")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    admin_id: str
    merchant_id: str
    reason: str
    token_id: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., admin_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., reason: _Optional[str] = ..., token_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartImpersonationRequest(_message.Message):
    __slots__ = ("merchant_id", "reason", "ttl_seconds")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    reason: str
    ttl_seconds: int
    def __init__(self, merchant_id: _Optional[str] = ..., reason: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class StartImpersonationResponse(_message.Message):
    __slots__ = ("session", "access_token")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session: ImpersonationSession
    access_token: str
    def __init__(self, session: _Optional[_Union[ImpersonationSession, _Mapping]] = ..., access_token: _Optional[str] = ...) -> None: ...

class EndImpersonationRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndImpersonationResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ImpersonationSession
    def __init__(self, session: _Optional[_Union[ImpersonationSession, _Mapping]] = ...) -> None: ...
