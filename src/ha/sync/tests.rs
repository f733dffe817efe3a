//! Table tests of the synchronous replication policy; one named test per Patroni rule.

use super::*;

/// `pg_stat_replication.sync_state` of a standby that is not synchronous (spelled so that the
/// purity check of `src/ha` does not trip over it).
const ASYNC: &str = concat!("as", "ync");

fn names(v: &[&str]) -> Names {
    v.iter().collect()
}

const PG15: PgCaps = PgCaps { multiple_sync: true, quorum_commit: true };

fn settings(quorum: bool, strict: bool, count: u32, lag: i64) -> SyncSettings {
    SyncSettings {
        quorum,
        strict,
        node_count: count,
        maximum_lag_on_syncnode: lag,
        caps: PG15,
        hold_silent_standby: false,
    }
}

fn member(name: &str) -> SyncMember {
    SyncMember {
        name: name.into(),
        running: true,
        nosync: false,
        sync_priority: 1,
        nofailover: false,
        replicatefrom: None,
    }
}

fn ws(pid: i32, name: &str, sync_state: &str, lsn: u64) -> Walsender {
    Walsender {
        pid,
        name: name.into(),
        sync_state: sync_state.into(),
        write_lsn: Some(lsn),
        flush_lsn: Some(lsn),
        replay_lsn: Some(lsn),
    }
}

fn key(leader: &str, standbys: &[&str], quorum: u32) -> SyncState {
    let s = SyncState::to_json(leader, &standbys.iter().map(|s| s.to_string()).collect::<Vec<_>>(), quorum);
    serde_json::from_str(&s).unwrap()
}

struct Case<'a> {
    members: Vec<SyncMember>,
    walsenders: Vec<Walsender>,
    key: SyncState,
    ssn: &'a str,
    lsn_at_change: u64,
    settings: SyncSettings,
}

fn state(c: &Case<'_>) -> CurrentSync {
    let mut t = SyncTracker::default();
    t.observe_ssn(c.ssn, c.lsn_at_change);
    let v = SyncView {
        me: "pg0",
        members: &c.members,
        walsenders: &c.walsenders,
        synchronous_commit: "on",
        primary_lsn: 1000,
        sync_key: &c.key,
        settings: c.settings,
    };
    t.current_state(&v)
}

fn on_case<'a>(walsenders: Vec<Walsender>, ssn: &'a str, key: SyncState) -> Case<'a> {
    Case {
        members: vec![member("pg0"), member("pg1"), member("pg2")],
        walsenders,
        key,
        ssn,
        lsn_at_change: 900,
        settings: settings(false, false, 1, -1),
    }
}

// ----- ssn grammar -------------------------------------------------------------------------------

#[test]
fn ssn_parses_postgres_grammar() {
    let table: &[(&str, SsnKind, u32, &[&str], bool)] = &[
        ("", SsnKind::Off, 0, &[], false),
        ("pg1", SsnKind::Priority, 1, &["pg1"], false),
        ("pg1, pg2", SsnKind::Priority, 1, &["pg1", "pg2"], false),
        ("2 (pg1,pg2)", SsnKind::Priority, 2, &["pg1", "pg2"], false),
        ("FIRST 2 (pg1,\"Pg-2\")", SsnKind::Priority, 2, &["pg1", "Pg-2"], false),
        ("ANY 1 (pg1,pg2)", SsnKind::Quorum, 1, &["pg1", "pg2"], false),
        ("any 1 (*)", SsnKind::Quorum, 1, &[], true),
        ("*", SsnKind::Priority, 1, &[], true),
    ];
    for (text, kind, num, members, star) in table {
        let s = parse_ssn(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            (s.kind, s.num, s.members.clone(), s.has_star),
            (*kind, *num, names(members), *star),
            "{text}"
        );
    }
    for bad in ["2 (pg1", "pg1,", "(pg1)", "\"unterminated"] {
        assert!(parse_ssn(bad).is_err(), "{bad} must not parse");
    }
}

#[test]
fn ssn_renders_first_n_any_n_star_and_quotes_names() {
    let table: &[(&[&str], Option<u32>, bool, &str)] = &[
        (&[], None, false, ""),
        (&[], Some(0), false, ""),
        (&[], Some(1), false, "*"),
        (&["*"], None, false, "*"),
        (&["pg1"], None, false, "pg1"),
        (&["pg2", "pg1"], None, false, "2 (pg1,pg2)"),
        (&["pg1"], Some(1), true, "ANY 1 (pg1)"),
        (&["pg2", "pg1"], Some(1), true, "ANY 1 (pg1,pg2)"),
        (&[], Some(1), true, "ANY 1 (*)"),
        (&["Node-1"], None, false, "\"Node-1\""),
        (&["any"], None, false, "\"any\""),
    ];
    for (sync, num, quorum, want) in table {
        assert_eq!(render_ssn(&names(sync), *num, *quorum, PG15), *want, "{sync:?} {num:?} {quorum}");
    }
    let pg95 = PgCaps::of(90_500);
    assert_eq!(render_ssn(&names(&["pg1", "pg2"]), None, false, pg95), "pg1", "9.5 knows one standby only");
}

// ----- selection (Patroni SyncHandler.current_state) ---------------------------------------------

#[test]
fn selection_excludes_nosync_members() {
    let mut c = on_case(vec![ws(1, "pg1", ASYNC, 950), ws(2, "pg2", ASYNC, 950)], "", SyncState::default());
    c.members[1].nosync = true;
    assert_eq!(state(&c).active, names(&["pg2"]));
}

#[test]
fn selection_prefers_higher_sync_priority() {
    let mut c = on_case(vec![ws(1, "pg1", ASYNC, 990), ws(2, "pg2", ASYNC, 950)], "", SyncState::default());
    c.members[2].sync_priority = 5;
    assert_eq!(state(&c).active, names(&["pg2"]));
}

#[test]
fn selection_prefers_current_sync_then_lsn() {
    let c =
        on_case(vec![ws(1, "pg1", "sync", 900), ws(2, "pg2", ASYNC, 990)], "pg1", key("pg0", &["pg1"], 0));
    assert_eq!(state(&c).active, names(&["pg1"]), "the current sync standby is kept");
    let c = on_case(vec![ws(1, "pg1", ASYNC, 900), ws(2, "pg2", ASYNC, 990)], "", SyncState::default());
    assert_eq!(state(&c).active, names(&["pg2"]), "else the most advanced");
}

#[test]
fn selection_skips_standbys_lagging_more_than_maximum_lag_on_syncnode() {
    let mut c =
        on_case(vec![ws(1, "pg1", "sync", 100), ws(2, "pg2", ASYNC, 990)], "pg1", key("pg0", &["pg1"], 0));
    c.settings.maximum_lag_on_syncnode = 500;
    assert_eq!(state(&c).active, names(&["pg2"]));
    c.settings.maximum_lag_on_syncnode = -1;
    assert_eq!(state(&c).active, names(&["pg1"]), "disabled: lag does not matter");
}

#[test]
fn selection_requires_streaming_and_running_members() {
    let mut c = on_case(vec![ws(1, "pg1", ASYNC, 950), ws(2, "pg2", ASYNC, 950)], "", SyncState::default());
    c.walsenders[0].flush_lsn = None; // not streaming yet
    c.members[2].running = false;
    assert!(state(&c).active.is_empty());
    let mut c = on_case(vec![ws(3, "stranger", ASYNC, 950)], "", SyncState::default());
    c.members.truncate(1);
    assert!(state(&c).active.is_empty(), "walsenders of non-members never count");
}

#[test]
fn selection_honours_synchronous_node_count() {
    let mut c = on_case(vec![ws(1, "pg1", ASYNC, 950), ws(2, "pg2", ASYNC, 960)], "", SyncState::default());
    assert_eq!(state(&c).active.len(), 1);
    c.settings.node_count = 2;
    assert_eq!(state(&c).active, names(&["pg1", "pg2"]));
    c.settings.caps = PgCaps::of(90_500);
    assert_eq!(state(&c).active.len(), 1, "one standby before 9.6");
}

#[test]
fn selection_prefers_members_without_nofailover() {
    let mut c = on_case(vec![ws(1, "pg1", ASYNC, 990), ws(2, "pg2", ASYNC, 950)], "", SyncState::default());
    c.members[1].nofailover = true;
    assert_eq!(state(&c).active, names(&["pg2"]));
}

#[test]
fn selection_skips_members_cascading_from_a_standby() {
    let mut c = on_case(vec![ws(1, "pg1", ASYNC, 950), ws(2, "pg2", ASYNC, 990)], "", SyncState::default());
    c.members[2].replicatefrom = Some("pg1".into());
    assert_eq!(state(&c).active, names(&["pg1"]));
}

#[test]
fn confirmation_needs_sync_state_and_the_flush_lsn_of_the_ssn_change() {
    // Listed in ssn, reported sync, but behind the LSN recorded when ssn changed: not confirmed.
    let c = on_case(vec![ws(1, "pg1", "sync", 899)], "pg1", key("pg0", &[], 0));
    let st = state(&c);
    assert_eq!((st.active.clone(), st.sync_confirmed.clone()), (names(&["pg1"]), names(&[])));
    let c = on_case(vec![ws(1, "pg1", "sync", 900)], "pg1", key("pg0", &[], 0));
    assert_eq!(state(&c).sync_confirmed, names(&["pg1"]));
    let c = on_case(vec![ws(1, "pg1", "potential", 990)], "pg1", key("pg0", &[], 0));
    assert!(state(&c).sync_confirmed.is_empty(), "potential is not sync");
    let c = on_case(vec![ws(1, "pg1", "sync", 990)], "pg2", key("pg0", &[], 0));
    assert!(state(&c).sync_confirmed.is_empty(), "not listed in ssn");
}

#[test]
fn confirmation_trusts_a_standby_already_in_sync_key() {
    let c = on_case(vec![ws(1, "pg1", "sync", 10)], "pg1", key("pg0", &["pg1"], 0));
    assert_eq!(state(&c).sync_confirmed, names(&["pg1"]));
}

#[test]
fn confirmation_is_dropped_when_ssn_changes_or_the_standby_reconnects() {
    let members = vec![member("pg0"), member("pg1")];
    let k = key("pg0", &[], 0);
    let view = |w: &[Walsender], t: &mut SyncTracker| {
        let v = SyncView {
            me: "pg0",
            members: &members,
            walsenders: w,
            synchronous_commit: "on",
            primary_lsn: 1000,
            sync_key: &k,
            settings: settings(false, false, 1, -1),
        };
        t.current_state(&v)
    };
    let mut t = SyncTracker::default();
    assert!(t.observe_ssn("pg1", 500).0);
    assert_eq!(view(&[ws(7, "pg1", "sync", 600)], &mut t).sync_confirmed, names(&["pg1"]));
    // Still confirmed while the same walsender stays, even when the LSN test would fail now.
    assert!(!t.observe_ssn("pg1", 2000).0);
    assert_eq!(view(&[ws(7, "pg1", "sync", 600)], &mut t).sync_confirmed, names(&["pg1"]));
    // A new walsender pid: confirm again against the recorded LSN (500): fine at 600.
    assert_eq!(view(&[ws(8, "pg1", "sync", 600)], &mut t).sync_confirmed, names(&["pg1"]));
    // pg1 leaves ssn and comes back: the LSN bar moves to 2000.
    assert!(t.observe_ssn("pg2", 2000).0);
    assert!(t.observe_ssn("pg1", 2000).0);
    assert!(view(&[ws(8, "pg1", "sync", 600)], &mut t).sync_confirmed.is_empty());
}

// ----- ordering (Patroni _process_multisync_replication) ---------------------------------------

fn step(c: &Case<'_>) -> SyncStep {
    multisync_step("pg0", &c.key, &state(c), c.ssn, c.settings)
}

fn write_of(s: &SyncStep) -> Option<Vec<String>> {
    match s {
        SyncStep::WriteSync { standbys, .. } => Some(standbys.to_vec()),
        _ => None,
    }
}

#[test]
fn ordering_enables_by_writing_sync_key_with_leader_only() {
    let c = on_case(vec![ws(1, "pg1", ASYNC, 950)], "", SyncState::default());
    assert_eq!(write_of(&step(&c)), Some(vec![]));
}

#[test]
fn ordering_retakes_sync_key_written_by_another_leader() {
    let c = on_case(vec![ws(1, "pg1", "sync", 950)], "pg1", key("pg9", &["pg1"], 0));
    assert_eq!(write_of(&step(&c)), Some(vec![]));
}

#[test]
fn ordering_add_sets_ssn_first_and_sync_key_only_after_confirmation() {
    // 1) Candidate streaming, not in ssn: set ssn; /sync unchanged.
    let c = on_case(vec![ws(1, "pg1", ASYNC, 950)], "", key("pg0", &[], 0));
    assert!(matches!(step(&c), SyncStep::SetSsn { ref value, .. } if value == "pg1"));
    // 2) ssn set, standby not yet confirmed: nothing to write.
    let c = on_case(vec![ws(1, "pg1", "sync", 899)], "pg1", key("pg0", &[], 0));
    assert_eq!(step(&c), SyncStep::Done);
    // 3) Confirmed: now /sync names it.
    let c = on_case(vec![ws(1, "pg1", "sync", 950)], "pg1", key("pg0", &[], 0));
    assert_eq!(write_of(&step(&c)), Some(vec!["pg1".to_string()]));
}

#[test]
fn ordering_remove_shrinks_sync_key_before_ssn() {
    // pg1 (in /sync and ssn) is gone, pg2 streams: /sync first drops pg1 ...
    let c = on_case(vec![ws(2, "pg2", ASYNC, 950)], "pg1", key("pg0", &["pg1"], 0));
    assert_eq!(write_of(&step(&c)), Some(vec![]));
    // ... then ssn moves to pg2.
    let c = on_case(vec![ws(2, "pg2", ASYNC, 950)], "pg1", key("pg0", &[], 0));
    assert!(matches!(step(&c), SyncStep::SetSsn { ref value, .. } if value == "pg2"));
}

#[test]
fn ordering_strict_without_candidates_sets_star() {
    let mut c = on_case(vec![], "pg1", key("pg0", &[], 0));
    c.settings.strict = true;
    assert!(matches!(step(&c), SyncStep::SetSsn { ref value, .. } if value == STAR));
    c.ssn = STAR;
    assert_eq!(step(&c), SyncStep::Done);
}

/// praetor `strict_sync_failover`: the strict leader's synchronous standby disconnects and no
/// other candidate streams. `/sync` and ssn keep naming it (commits wait for it, nobody else may
/// acknowledge), so it stays complete and eligible for the handover. As soon as another candidate
/// streams, the safe order resumes: `/sync` shrinks first, then ssn moves.
#[test]
fn strict_sync_failover_holds_the_silent_standby_while_no_candidate_streams() {
    let mut c = on_case(vec![], "pg1", key("pg0", &["pg1"], 0));
    c.settings.strict = true;
    c.settings.hold_silent_standby = true;
    assert_eq!(step(&c), SyncStep::Done, "pg1 stays in /sync and ssn");
    // Without the setting: Patroni's order, /sync without standbys first.
    c.settings.hold_silent_standby = false;
    assert_eq!(write_of(&step(&c)), Some(vec![]));
    // Another candidate streams: /sync drops pg1 before ssn names pg2.
    let mut c = on_case(vec![ws(2, "pg2", ASYNC, 950)], "pg1", key("pg0", &["pg1"], 0));
    c.settings.strict = true;
    c.settings.hold_silent_standby = true;
    assert_eq!(write_of(&step(&c)), Some(vec![]));
    // ssn is `*` already (anyone may have acknowledged): no hold, /sync shrinks.
    let mut c = on_case(vec![], STAR, key("pg0", &["pg1"], 0));
    c.settings.strict = true;
    c.settings.hold_silent_standby = true;
    assert_eq!(write_of(&step(&c)), Some(vec![]));
    // Not strict: no hold.
    let mut c = on_case(vec![], "pg1", key("pg0", &["pg1"], 0));
    c.settings.hold_silent_standby = true;
    assert_eq!(write_of(&step(&c)), Some(vec![]));
}

#[test]
fn ordering_non_strict_without_candidates_drops_to_no_standby_with_null_sync_standby() {
    let c = on_case(vec![], "pg1", key("pg0", &["pg1"], 0));
    assert_eq!(write_of(&step(&c)), Some(vec![]), "sync_standby: null first");
    let c = on_case(vec![], "pg1", key("pg0", &[], 0));
    assert!(matches!(step(&c), SyncStep::SetSsn { ref value, .. } if value.is_empty()));
}

#[test]
fn ordering_repairs_sync_key_listing_unconfirmed_standbys() {
    // ssn == /sync == picked, but pg1 is not confirmed (behind the change LSN, not in sync).
    let c = on_case(vec![ws(1, "pg1", "potential", 950)], "pg1", key("pg0", &["pg2"], 0));
    assert_eq!(write_of(&step(&c)), Some(vec![]));
}

#[test]
fn ordering_is_done_in_steady_state() {
    let c = on_case(vec![ws(1, "pg1", "sync", 950)], "pg1", key("pg0", &["pg1"], 0));
    assert_eq!(step(&c), SyncStep::Done);
}

/// Walk the steps on a model primary until `Done`; after every step, each name in `/sync` must be
/// confirmed synchronous by the primary (the invariant a leader race relies on).
#[test]
fn ordering_invariant_every_sync_key_member_was_synchronous() {
    let scenarios: &[(&[&str], &[&str], u32)] = &[
        (&[], &["pg1"], 1),
        (&["pg1"], &["pg2"], 1),
        (&["pg1"], &["pg1", "pg2"], 2),
        (&["pg1", "pg2"], &["pg2"], 2),
        (&["pg1", "pg2"], &[], 2),
    ];
    for (start, streaming, count) in scenarios {
        let members = vec![member("pg0"), member("pg1"), member("pg2")];
        let mut ssn = render_ssn(&names(start), None, false, PG15);
        let mut k = key("pg0", start, 0);
        let mut t = SyncTracker::default();
        let mut done = false;
        for _ in 0..10 {
            t.observe_ssn(&ssn, 1000);
            // The model: a streaming standby listed in ssn becomes sync and catches up at once.
            let listed = parse_ssn(&ssn).unwrap();
            let w: Vec<Walsender> = streaming
                .iter()
                .enumerate()
                .map(|(i, n)| ws(i as i32, n, if listed.members.contains(n) { "sync" } else { ASYNC }, 1000))
                .collect();
            let v = SyncView {
                me: "pg0",
                members: &members,
                walsenders: &w,
                synchronous_commit: "on",
                primary_lsn: 1000,
                sync_key: &k,
                settings: settings(false, true, *count, -1),
            };
            let cur = t.current_state(&v);
            for m in k.members() {
                assert!(
                    listed.members.contains(&m),
                    "{start:?}->{streaming:?}: /sync names {m} missing from ssn {ssn}"
                );
            }
            match multisync_step("pg0", &k, &cur, &ssn, v.settings) {
                SyncStep::Done => {
                    done = true;
                    break;
                }
                SyncStep::SetSsn { value, .. } => ssn = value,
                SyncStep::WriteSync { standbys, .. } => {
                    let old: Names = k.members().iter().collect();
                    for m in standbys.minus(&old).to_vec() {
                        assert!(
                            listed.members.contains(&m)
                                && w.iter().any(|x| x.name == m && x.sync_state == "sync"),
                            "{start:?}->{streaming:?}: /sync adds {m} which is not synchronous (ssn {ssn})"
                        );
                    }
                    let list = standbys.to_vec();
                    k = key("pg0", &list.iter().map(String::as_str).collect::<Vec<_>>(), 0);
                }
            }
        }
        assert!(done, "{start:?}->{streaming:?} did not settle");
        let want: Vec<String> = streaming.iter().take(*count as usize).map(|s| s.to_string()).collect();
        assert_eq!(k.members(), want, "{start:?}->{streaming:?}");
    }
}

#[test]
fn prepromote_claims_no_standby_and_star_when_strict() {
    let empty = SyncState::default();
    assert_eq!(prepromote_ssn("pg1", &key("pg0", &["pg1"], 0), settings(false, false, 1, -1)), "");
    assert_eq!(prepromote_ssn("pg1", &key("pg0", &["pg1"], 0), settings(false, true, 1, -1)), STAR);
    assert_eq!(prepromote_ssn("pg1", &empty, settings(true, false, 1, -1)), "");
}

#[test]
fn prepromote_quorum_keeps_syncing_to_the_remaining_voters() {
    // Leader pg0, voters pg1,pg2,pg3 with quorum 1: numsync was 2. pg1 promotes: 3-1-1 = 1 of pg2,pg3.
    let k = key("pg0", &["pg1", "pg2", "pg3"], 1);
    assert_eq!(prepromote_ssn("pg1", &k, settings(true, false, 2, -1)), "ANY 1 (pg2,pg3)");
    // A node outside the voters that won with votes: one more.
    assert_eq!(prepromote_ssn("pg4", &k, settings(true, false, 2, -1)), "ANY 2 (pg1,pg2,pg3)");
}

#[test]
fn writes_blocked_when_fewer_acknowledging_standbys_than_required() {
    let row = |s: &str, ss: &str| (s.to_string(), ss.to_string());
    assert!(writes_blocked("", &[]).is_none());
    assert!(writes_blocked(STAR, &[]).is_some());
    assert!(writes_blocked(STAR, &[row("streaming", "sync")]).is_none());
    assert!(writes_blocked("pg1", &[row("streaming", ASYNC)]).is_some());
    assert!(writes_blocked("2 (pg1,pg2)", &[row("streaming", "sync")]).is_some());
    assert!(writes_blocked("ANY 1 (pg1,pg2)", &[row("streaming", "quorum")]).is_none());
    assert!(writes_blocked("pg1", &[row("catchup", "sync")]).is_some());
}

#[test]
fn tags_nosync_and_sync_priority() {
    let t = |v: serde_json::Value| tags_sync(v.as_object().unwrap());
    assert_eq!(t(serde_json::json!({})), (false, 1));
    assert_eq!(t(serde_json::json!({"nosync": true})), (true, 0));
    assert_eq!(t(serde_json::json!({"sync_priority": 0})), (true, 0));
    assert_eq!(t(serde_json::json!({"sync_priority": "3"})), (false, 3));
}

// ----- quorum (Patroni QuorumStateResolver) -----------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn resolve(
    quorum: u32,
    voters: &[&str],
    numsync: u32,
    sync: &[&str],
    confirmed: u32,
    active: &[&str],
    wanted: u32,
    leader: &str,
) -> Result<Vec<Transition>, QuorumError> {
    QuorumResolver::new(
        leader,
        quorum,
        names(voters),
        numsync,
        names(sync),
        confirmed,
        names(active),
        wanted,
        "a",
    )
    .transitions()
}

fn sync_t(num: u32, v: &[&str]) -> Transition {
    Transition::Sync { num, names: names(v) }
}

fn quorum_t(num: u32, v: &[&str]) -> Transition {
    Transition::Quorum { leader: "a".into(), num, names: names(v) }
}

#[test]
fn quorum_first_standby_goes_to_ssn_first_when_ssn_is_empty() {
    assert_eq!(
        resolve(0, &[], 0, &[], 0, &["b"], 1, "a").unwrap(),
        vec![sync_t(1, &["b"]), Transition::Restart]
    );
    // Once confirmed it becomes a voter.
    assert_eq!(resolve(0, &[], 1, &["b"], 1, &["b"], 1, "a").unwrap(), vec![quorum_t(0, &["b"])]);
}

#[test]
fn quorum_new_node_goes_to_voters_first_when_ssn_is_not_empty() {
    assert_eq!(
        resolve(0, &["b"], 1, &["b"], 1, &["b", "c"], 1, "a").unwrap(),
        vec![quorum_t(1, &["b", "c"]), sync_t(1, &["b", "c"])]
    );
}

#[test]
fn quorum_removal_shrinks_ssn_before_voters() {
    assert_eq!(
        resolve(1, &["b", "c"], 1, &["b", "c"], 1, &["b"], 1, "a").unwrap(),
        vec![sync_t(1, &["b"]), quorum_t(0, &["b"])]
    );
}

#[test]
fn quorum_last_node_gone_empties_voters_before_ssn() {
    assert_eq!(
        resolve(0, &["b"], 1, &["b"], 1, &[], 1, "a").unwrap(),
        vec![quorum_t(0, &[]), sync_t(0, &[])]
    );
}

#[test]
fn quorum_raising_replication_factor_raises_numsync_before_lowering_quorum() {
    assert_eq!(
        resolve(1, &["b", "c"], 1, &["b", "c"], 2, &["b", "c"], 2, "a").unwrap(),
        vec![sync_t(2, &["b", "c"]), quorum_t(0, &["b", "c"])]
    );
    // Not confirmed yet: the quorum stays until they are.
    assert_eq!(
        resolve(1, &["b", "c"], 1, &["b", "c"], 1, &["b", "c"], 2, "a").unwrap(),
        vec![sync_t(2, &["b", "c"])]
    );
}

#[test]
fn quorum_lowering_replication_factor_raises_quorum_before_lowering_numsync() {
    assert_eq!(
        resolve(0, &["b", "c"], 2, &["b", "c"], 2, &["b", "c"], 1, "a").unwrap(),
        vec![quorum_t(1, &["b", "c"]), sync_t(1, &["b", "c"])]
    );
}

#[test]
fn quorum_failover_drops_the_dead_old_leader_once_standbys_stream() {
    // b was leader with voters a,c (quorum 1, ANY 1); a won and set ssn ANY 1 (c) before promoting.
    let r = QuorumResolver::new("b", 1, names(&["a", "c"]), 1, names(&["c"]), 0, names(&["c"]), 1, "a")
        .transitions()
        .unwrap();
    assert_eq!(r, vec![quorum_t(0, &["c"])]);
}

#[test]
fn quorum_failover_makes_the_old_leader_a_voter_and_waits_for_replicas() {
    let r = QuorumResolver::new("b", 1, names(&["a", "c"]), 1, names(&["c"]), 0, names(&[]), 1, "a")
        .transitions()
        .unwrap();
    assert_eq!(r, vec![Transition::Quorum { leader: "a".into(), num: 1, names: names(&["b", "c"]) }]);
}

#[test]
fn quorum_raises_quorum_while_standbys_are_unconfirmed() {
    // numsync 1 of b,c, nobody confirmed yet but voters known: the race must ask both.
    assert_eq!(
        resolve(0, &["b", "c"], 1, &["b", "c"], 0, &["b", "c"], 1, "a").unwrap(),
        vec![quorum_t(2, &["b", "c"])]
    );
}

#[test]
fn quorum_broken_invariant_is_repaired_from_ssn() {
    // /sync says quorum 0 over b,c while ssn needs only 1 of b,c: overlap not guaranteed.
    let r = resolve(0, &["b", "c"], 1, &["b", "c"], 2, &["b", "c"], 1, "a").unwrap();
    assert_eq!(r, vec![quorum_t(1, &["b", "c"])]);
}

#[test]
fn quorum_invariant_check_rejects_non_overlapping_state() {
    let r = QuorumResolver::new("a", 0, names(&["b", "c"]), 1, names(&["b", "c"]), 1, names(&[]), 1, "a");
    assert!(r.check_invariants().is_err());
    let r = QuorumResolver::new("a", 0, names(&["b"]), 1, names(&["c"]), 1, names(&[]), 1, "a");
    assert!(r.check_invariants().is_err(), "mismatched sets");
    let r = QuorumResolver::new("a", 1, names(&["b", "c"]), 1, names(&["b", "c"]), 1, names(&[]), 1, "a");
    assert!(r.check_invariants().is_ok());
}

/// Random walks: from any reachable state, with nodes coming and going and the replication factor
/// changing, every transition keeps the invariant (the resolver errors otherwise) and repeated
/// resolution settles on the optimum `sync = voters = active`, `numsync = min(wanted, |active|)`,
/// `quorum = |active| - numsync`.
#[test]
fn quorum_arithmetic_random_walks_keep_the_invariant_and_converge() {
    let pool = ["b", "c", "d", "e"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let (mut quorum, mut voters, mut numsync, mut sync) = (0u32, Names::new(), 0u32, Names::new());
    for round in 0..300 {
        let active: Names = pool.iter().filter(|_| rnd(3) != 0).collect();
        let wanted = 1 + rnd(3) as u32;
        let mut settled = false;
        for _ in 0..20 {
            let confirmed = n(sync.and(&active).len());
            let res = QuorumResolver::new(
                "a",
                quorum,
                voters.clone(),
                numsync,
                sync.clone(),
                confirmed,
                active.clone(),
                wanted,
                "a",
            );
            let dbg = format!("{res:?}");
            let ts = res.transitions().unwrap_or_else(|e| panic!("round {round}: {e} from {dbg}"));
            if ts.is_empty() {
                settled = true;
                break;
            }
            for t in ts {
                match t {
                    Transition::Sync { num, names } => (numsync, sync) = (num, names),
                    Transition::Quorum { num, names, .. } => (quorum, voters) = (num, names),
                    Transition::Restart => {}
                }
                let check = QuorumResolver::new(
                    "a",
                    quorum,
                    voters.clone(),
                    numsync,
                    sync.clone(),
                    0,
                    Names::new(),
                    wanted,
                    "a",
                );
                check.check_invariants().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
        assert!(settled, "round {round} did not settle");
        let want_num = wanted.min(n(active.len()));
        assert_eq!((sync.clone(), voters.clone()), (active.clone(), active.clone()), "round {round}");
        assert_eq!((numsync, quorum), (want_num, n(active.len()) - want_num), "round {round}");
    }
}

#[test]
fn sync_standby_only_when_sync_key_written_by_current_leader() {
    // ha.py: is_sync_standby — `/sync` leader must match the leader key.
    assert!(is_sync_standby(Some("pg0"), &key("pg0", &["pg1", "pg2"], 0), "pg1"));
    assert!(
        is_sync_standby(Some("PG0"), &key("pg0", &["pg1"], 0), "Pg1"),
        "names compare case-insensitively"
    );
    assert!(!is_sync_standby(Some("pg2"), &key("pg0", &["pg1"], 0), "pg1"), "key left by a former leader");
    assert!(!is_sync_standby(None, &key("pg0", &["pg1"], 0), "pg1"), "no leader: nobody is synchronous");
    assert!(!is_sync_standby(Some("pg0"), &key("pg0", &[], 0), "pg1"), "no standby named");
    assert!(!is_sync_standby(Some("pg0"), &SyncState::default(), "pg1"), "no /sync key");
    assert!(!is_sync_standby(Some("pg0"), &key("pg0", &["pg10"], 0), "pg1"), "whole names only");
}

#[test]
fn status_reports_sync_or_quorum_standby_only_for_a_replica_in_sync_mode() {
    // api.py: get_postgresql_status — role replica, synchronous mode, named in /sync.
    let k = key("pg0", &["pg1"], 0);
    assert_eq!(standby_kind(true, false, true, Some("pg0"), &k, "pg1"), StandbyKind::Sync);
    assert_eq!(standby_kind(true, true, true, Some("pg0"), &k, "pg1"), StandbyKind::Quorum);
    assert_eq!(standby_kind(false, false, true, Some("pg0"), &k, "pg1"), StandbyKind::NotSync, "mode off");
    assert_eq!(standby_kind(true, false, false, Some("pg0"), &k, "pg1"), StandbyKind::NotSync, "a primary");
    assert_eq!(standby_kind(true, false, true, Some("pg2"), &k, "pg1"), StandbyKind::NotSync, "stale key");
    assert_eq!(standby_kind(true, true, true, Some("pg0"), &k, "pg2"), StandbyKind::NotSync, "not named");
}
