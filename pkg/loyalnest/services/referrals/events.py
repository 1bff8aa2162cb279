"""What Referrals tells the mesh (referral.created, referral.completed, keyed by the
referrer), and the consumer group its processes share."""

from __future__ import annotations

from loyalnest.gen.events.v1 import referrals_pb2 as events_pb2
from loyalnest.services.referrals.domain import Conversion, Referral

# The consumer group of every Referrals process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.referrals"


def referral_created(referral: Referral, channel: str) -> events_pb2.ReferralCreated:
    return events_pb2.ReferralCreated(
        referral_id=referral.referral_id,
        referrer_id=referral.referrer_id,
        # The link is the code's: one per referral.
        referral_link_id=referral.code,
        channel=channel,
    )


def referral_completed(conversion: Conversion) -> events_pb2.ReferralCompleted:
    return events_pb2.ReferralCompleted(
        referral_id=conversion.referral_id,
        referrer_id=conversion.referrer_id,
        referee_id=conversion.referee_id,
        order_id=conversion.order_id,
    )
