# shellcheck shell=bash
# t/lib/collector-live.sh - all_subscribed, the "everything is live again" condition both
# collector chaos runs wait on (t/collector/chaos.sh, t/chaos/collector.sh). Sourced; the
# caller defines CTL (the Kalshi stand-in's control URL), metric WHICH NAME (a metric of
# one of its collectors) and leader (the one leading collector, nothing while none or
# several say so), each its own way.

# Everything the stand-in has open (or paused) is subscribed on a live link, and the
# leader has a snapshot of each and no gap open.
all_subscribed() {
    local want got l
    want=$(curl -sf "$CTL/markets?paused=1") && got=$(curl -sf "$CTL/subscribed") &&
        [[ $want == "$got" ]] || return 1
    l=$(leader)
    [[ -n $l && $(metric "$l" 'kalshibook_collector_markets{state="gap"}') == 0 &&
        $(metric "$l" 'kalshibook_collector_markets{state="live"}') == \
        $(metric "$l" 'kalshibook_collector_markets{state="wanted"}') ]]
}
