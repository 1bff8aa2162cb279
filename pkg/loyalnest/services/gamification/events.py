"""What Gamification tells the mesh (badge.awarded), and its consumer group."""

from __future__ import annotations

from loyalnest.gen.events.v1 import gamification_pb2
from loyalnest.services.gamification.domain import BadgeRule

# The consumer group of every Gamification process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.gamification"


def badge_awarded(
    badge_id: str, customer_id: str, rule: BadgeRule
) -> gamification_pb2.BadgeAwarded:
    # badge_type names the rule (its id): a merchant's rules are its badge types.
    return gamification_pb2.BadgeAwarded(
        badge_id=badge_id, customer_id=customer_id, badge_type=f"{rule.kind.value}:{rule.rule_id}"
    )
