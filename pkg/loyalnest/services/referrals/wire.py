"""The Referrals service's domain values as protobuf messages."""

from __future__ import annotations

from datetime import datetime

from loyalnest.gen.referrals.v1 import referrals_pb2 as pb
from loyalnest.platform.protos import optional_timestamp, timestamp
from loyalnest.services.referrals.domain import (
    Conversion,
    ConversionStatus,
    DiscountStatus,
    Progress,
    Referral,
    ReferralStatus,
    Stats,
)
from loyalnest.services.referrals.invites import Invite

REFERRAL_STATUSES = {
    ReferralStatus.ACTIVE: pb.REFERRAL_STATUS_ACTIVE,
    ReferralStatus.EXPIRED: pb.REFERRAL_STATUS_EXPIRED,
}
DISCOUNT_STATUSES = {
    DiscountStatus.NONE: pb.FRIEND_DISCOUNT_STATUS_NONE,
    DiscountStatus.PENDING: pb.FRIEND_DISCOUNT_STATUS_PENDING,
    DiscountStatus.CREATED: pb.FRIEND_DISCOUNT_STATUS_CREATED,
}
CONVERSION_STATUSES = {
    ConversionStatus.PENDING: pb.CONVERSION_STATUS_PENDING,
    ConversionStatus.COMPLETED: pb.CONVERSION_STATUS_COMPLETED,
    ConversionStatus.REFUSED: pb.CONVERSION_STATUS_REFUSED,
    ConversionStatus.CANCELLED: pb.CONVERSION_STATUS_CANCELLED,
}


def referral_proto(referral: Referral) -> pb.Referral:
    return pb.Referral(
        referral_id=referral.referral_id,
        referrer_id=referral.referrer_id,
        code=referral.code,
        link=referral.link,
        status=REFERRAL_STATUSES[referral.status],
        create_time=timestamp(referral.created_at),
        expire_time=optional_timestamp(referral.expires_at),
        friend_discount=DISCOUNT_STATUSES[referral.discount_status],
    )


def conversion_proto(conversion: Conversion) -> pb.Conversion:
    return pb.Conversion(
        conversion_id=conversion.conversion_id,
        referee_id=conversion.referee_id,
        order_id=conversion.order_id,
        status=CONVERSION_STATUSES[conversion.status],
        refusal_reason=conversion.refusal_reason,
        reward_points=conversion.reward_points,
        rewarded=conversion.rewarded,
        create_time=timestamp(conversion.created_at),
        complete_time=optional_timestamp(conversion.completed_at),
    )


def progress_proto(progress: Progress) -> pb.GetReferralProgressResponse:
    return pb.GetReferralProgressResponse(
        referrer_id=progress.referrer_id,
        completed=progress.completed,
        pending=progress.pending,
        points_earned=progress.points_earned,
        next_milestone=progress.next_milestone,
        next_milestone_bonus_points=progress.next_milestone_bonus_points,
    )


def stats_proto(stats: Stats, start: datetime, end: datetime) -> pb.GetReferralStatsResponse:
    return pb.GetReferralStatsResponse(
        start_time=timestamp(start),
        end_time=timestamp(end),
        referrals_created=stats.referrals_created,
        clicks=stats.clicks,
        conversions=stats.conversions,
        refused=stats.refused,
        conversion_rate=stats.conversion_rate,
    )


INVITE_CHANNELS = {"email": pb.INVITE_CHANNEL_EMAIL, "sms": pb.INVITE_CHANNEL_SMS}
INVITE_STATUSES = {
    "queued": pb.INVITE_STATUS_QUEUED,
    "sent": pb.INVITE_STATUS_SENT,
    "failed": pb.INVITE_STATUS_FAILED,
}


def invite_proto(invite: Invite) -> pb.Invite:
    return pb.Invite(
        invite_id=invite.invite_id,
        channel=INVITE_CHANNELS[invite.channel],
        status=INVITE_STATUSES[invite.status],
        provider=invite.provider,
        fallback_used=invite.fallback_used,
        failure_reason=invite.failure_reason,
        create_time=timestamp(invite.created_at),
        send_time=optional_timestamp(invite.sent_at),
    )
