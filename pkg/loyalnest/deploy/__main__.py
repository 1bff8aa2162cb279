"""python -m loyalnest.deploy {calls,gateway-config,dashboards,k8s-base,golden,all} [--check]

calls           charts/loyalnest/files/calls.json (whom each service calls, from its code)
gateway-config  charts/loyalnest/files/gateway/ (Envoy bootstrap + descriptor set)
dashboards      charts/loyalnest/files/dashboards/ (Grafana dashboards, loyalnest.deploy.dashboards)
k8s-base        k8s/base/loyalnest.yaml (the chart rendered for kustomize users)
golden          tests/deploy/golden/*.yaml (reviewed renders of the chart)
all             all of them, in that order

--check writes nothing and exits 1 listing the stale files.
"""

from __future__ import annotations

import argparse
import sys

from loyalnest.deploy.generate import GENERATORS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loyalnest.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=[*GENERATORS, "all"])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    names = list(GENERATORS) if args.what == "all" else [args.what]
    stale: list[str] = []
    for name in names:
        changed = GENERATORS[name](args.check)
        stale += changed
        if not args.check:
            print(f"{name}: {'updated ' + ', '.join(changed) if changed else 'up to date'}")
    if args.check and stale:
        print("stale generated files; run `make chart`:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
