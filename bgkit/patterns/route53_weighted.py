"""Route 53 weighted records: one record per colour under one name, traffic split by weight.

AWS (Route 53 Developer Guide, "Weighted routing"; API Reference ChangeResourceRecordSets,
ResourceRecordSet): each record of the name has a SetIdentifier and a Weight from 0 to 255;
resolvers answer a record with probability weight / total. bgkit writes weights as
percentages (blue = 100 - green) in one change batch, so both records change together. Clients
cache an answer for the record's TTL, so a change is effective only after the TTL: bgkit starts
each bake then, and the record says so. Evidence: each colour's own load balancer metrics
(per target group), since DNS itself reports no per-answer request metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from ..aws import AwsSession
from ..errors import ParameterError, PreflightError, TrafficError
from ..metrics import MetricSource, albs_source
from ..params import regex_checker
from ..planning import Change, send_all
from . import register
from .alb_weighted import TARGET_GROUP
from .base import Split, split_of

_ZONE = re.compile(r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}\.?$)([A-Za-z0-9*_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z]{2,63}\.?$"
)
ALIAS_TTL = 60
_SET_ID = re.compile(r"^[\x21-\x7e ]{1,128}$")


def _check_pair(resources: Mapping[str, str]) -> None:
    for blue, green in (
        ("blue_set_identifier", "green_set_identifier"),
        ("blue_target_group_arn", "green_target_group_arn"),
    ):
        if resources.get(blue) and resources.get(blue) == resources.get(green):
            raise ParameterError(green, f"must differ from {blue}", resources[green])


def _answers(record: dict[str, Any]) -> str:
    """The host a record answers: an alias target's DNS name or the first value."""
    if "AliasTarget" in record:
        value = record["AliasTarget"]["DNSName"]
    else:
        value = (record.get("ResourceRecords") or [{"Value": ""}])[0]["Value"]
    return value.rstrip(".").lower().removeprefix("dualstack.")


@register
class Route53Weighted:
    name: ClassVar[str] = "route53_weighted"
    title: ClassVar[str] = "Route 53 weighted records"
    iam_actions: ClassVar[tuple[str, ...]] = (  # see bgkit.iam
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTargetGroups",
        "route53:ChangeResourceRecordSets",
        "route53:GetChange",
        "route53:ListResourceRecordSets",
    )
    parameters: ClassVar[Mapping[str, Any]] = {
        "hosted_zone_id": regex_checker(
            _ZONE, "must be a hosted zone id such as Z0123456789ABCDEFGHIJ"
        ),
        "record_name": regex_checker(_DNS_NAME, "must be a DNS name such as www.example.com"),
        "blue_set_identifier": regex_checker(
            _SET_ID, "must be a SetIdentifier: 1-128 printable characters"
        ),
        "green_set_identifier": regex_checker(
            _SET_ID, "must be a SetIdentifier: 1-128 printable characters"
        ),
        "blue_target_group_arn": TARGET_GROUP,
        "green_target_group_arn": TARGET_GROUP,
    }
    check_resources = staticmethod(_check_pair)

    def __init__(self, session: AwsSession, resources: Mapping[str, str]) -> None:
        self._route53 = session.client("route53")
        self._elb = session.client("elbv2")
        self.zone = resources["hosted_zone_id"].rsplit("/", 1)[-1]
        # Route 53 keeps names in lower case
        self.record = resources["record_name"].rstrip(".").lower() + "."
        self.set_ids = {
            "blue": resources["blue_set_identifier"],
            "green": resources["green_set_identifier"],
        }
        self.target_groups = {
            "blue": resources["blue_target_group_arn"],
            "green": resources["green_target_group_arn"],
        }
        self._load_balancers: dict[str, str] = {}
        self._change_id: str | None = None

    def target_id(self) -> str:
        return f"route53:{self.zone}/{self.record}"

    # -- reads -------------------------------------------------------------------------

    def _records(self) -> dict[str, dict[str, Any]]:
        """The colour's weighted records of the name, by colour."""
        try:
            answer = self._route53.list_resource_record_sets(
                HostedZoneId=self.zone, StartRecordName=self.record, MaxItems="100"
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchHostedZone":
                raise PreflightError(
                    f"hosted zone {self.zone} does not exist", parameter="hosted_zone_id"
                ) from None
            raise
        by_id: dict[str, list[dict[str, Any]]] = {}
        for r in answer["ResourceRecordSets"]:
            if r["Name"] == self.record and "Weight" in r:
                by_id.setdefault(r["SetIdentifier"], []).append(r)
        found = {}
        for colour, set_id in self.set_ids.items():
            records = by_id.get(set_id, [])
            if len(records) > 1:
                # e.g. A and AAAA: shifting one type would leave the other's clients behind
                raise PreflightError(
                    f"{self.record} has weighted records of several types for SetIdentifier "
                    f"{set_id!r} ({', '.join(sorted(r['Type'] for r in records))}); bgkit shifts "
                    "names with one record type per colour",
                    parameter="record_name",
                )
            record = records[0] if records else None
            if record is None:
                raise PreflightError(
                    f"{self.record} has no weighted record with SetIdentifier {set_id!r}",
                    parameter=f"{colour}_set_identifier",
                )
            found[colour] = record
        return found

    def read_split(self) -> Split:
        records = self._records()
        return split_of(records["blue"]["Weight"], records["green"]["Weight"])

    def change_applied(self) -> bool:
        """Whether the last change has reached all Route 53 name servers (GetChange INSYNC);
        the TTL counts from then."""
        if self._change_id is None:
            return True
        return self._route53.get_change(Id=self._change_id)["ChangeInfo"]["Status"] == "INSYNC"

    def effective_after_seconds(self) -> float:
        """Clients keep a cached answer for the TTL: a weight change is effective after it.
        An alias record has no TTL of its own; an ELB alias answers with 60 s ("Values for
        alias records", TTL)."""
        return float(
            max(
                r.get("TTL", ALIAS_TTL if "AliasTarget" in r else 0)
                for r in self._records().values()
            )
        )

    def preflight(self) -> Split:
        records = self._records()
        types = {r["Type"] for r in records.values()}
        if len(types) != 1:
            raise PreflightError(
                f"blue and green records differ in type ({', '.join(sorted(types))})",
                parameter="green_set_identifier",
            )
        others = self._route53.list_resource_record_sets(
            HostedZoneId=self.zone, StartRecordName=self.record, MaxItems="100"
        )["ResourceRecordSets"]
        extra = [
            r.get("SetIdentifier")
            for r in others
            if r["Name"] == self.record
            and r["Type"] in types
            and r.get("SetIdentifier") not in self.set_ids.values()
            and int(r.get("Weight", 0))
        ]
        if extra:
            raise PreflightError(
                f"{self.record} has other weighted records with traffic ({', '.join(map(str, extra))}); "
                "bgkit shifts only between blue and green",
                parameter="record_name",
            )
        for colour, arn in self.target_groups.items():
            try:
                group = self._elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
            except ClientError as error:
                if "TargetGroupNotFound" in error.response["Error"]["Code"]:
                    raise PreflightError(
                        f"target group {arn} does not exist", parameter=f"{colour}_target_group_arn"
                    ) from None
                raise
            if not group.get("LoadBalancerArns"):
                raise PreflightError(
                    f"target group {arn} is behind no load balancer: no metrics to judge by",
                    parameter=f"{colour}_target_group_arn",
                )
            self._load_balancers[colour] = group["LoadBalancerArns"][0]
        # The evidence must be the endpoint the colour's record answers, or verdicts judge
        # something else. (Records that name an IP or another host are not checked.)
        names = {
            colour: self._elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0][
                "DNSName"
            ].lower()
            for colour, arn in self._load_balancers.items()
        }
        for colour, record in records.items():
            target = _answers(record)
            if target in names.values() and target != names[colour]:
                raise PreflightError(
                    f"the {colour} record answers {target}, the load balancer of the other colour's "
                    "target group: the evidence would be swapped",
                    parameter=f"{colour}_target_group_arn",
                )
        return self.read_split()

    def metric_source(self) -> MetricSource:
        return albs_source(
            {c: (self._load_balancers[c], self.target_groups[c]) for c in ("blue", "green")}
        )

    def describe(self) -> dict[str, Any]:
        keys = ("SetIdentifier", "Weight", "TTL", "Type", "ResourceRecords", "HealthCheckId")
        return {
            "records": {c: {k: r.get(k) for k in keys} for c, r in self._records().items()},
            "split": self.read_split(),
        }

    def versions(self) -> dict[str, str]:
        """What each colour's record answers (its type and values, or its alias target)."""
        return {colour: _serves(record) for colour, record in self._records().items()}

    # -- the one write ------------------------------------------------------------------

    def set_split(self, green_percent: int) -> Split:
        [answer] = send_all(self.changes_to(green_percent))
        self._change_id = answer["ChangeInfo"]["Id"]
        split = self.read_split()
        if split["green"] != green_percent:
            raise TrafficError(
                f"asked for green {green_percent}% but the records read back", split=split
            )
        return split

    def changes_to(self, green_percent: int) -> list[Change]:
        """Both records' weights for `green_percent` in one change batch: one
        ChangeResourceRecordSets, each record sent back as read with only its Weight changed."""
        records = self._records()
        changes = []
        for colour, weight in (("blue", 100 - green_percent), ("green", green_percent)):
            record = {k: v for k, v in records[colour].items() if k != "Weight"}
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {**record, "Weight": weight}})
        return [
            Change(
                self._route53,
                "ChangeResourceRecordSets",
                {
                    "HostedZoneId": self.zone,
                    "ChangeBatch": {
                        "Comment": f"bgkit: green {green_percent}%",
                        "Changes": changes,
                    },
                },
                f"weights of {self.record} blue {100 - green_percent} / green {green_percent}",
            )
        ]


def _serves(record: dict[str, Any]) -> str:
    """A record's answer in words: 'CNAME blue.example.com' or 'A alias my-lb...elb.amazonaws.com'."""
    if "AliasTarget" in record:
        return f"{record['Type']} alias {record['AliasTarget']['DNSName']}"
    values = ", ".join(r["Value"] for r in record.get("ResourceRecords") or [])
    return f"{record['Type']} {values}"
