"""How recovery decides, over every step a switch can die in: which side keeps serving,
what is stopped, rewritten, reloaded and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.host import journal
from shipyard.host.journal import PHASES, Entry, Phase, Seen, Side
from shipyard.host.layout import HostLayout

OLD = Side("r1", "blue")
NEW = Side("r2", "green")
BOTH = frozenset({"blue", "green"})


def _entry(
    phase: Phase, action: str = "deploy", origin: Side | None = OLD, to: Side = NEW
) -> Entry:
    return Entry(app="flaskr", action=action, phase=phase, to=to, origin=origin, pid=1)


def _seen(
    serving: Side | None,
    site: Side | None = None,
    running: frozenset[str] = BOTH,
    live: Side | None = OLD,
) -> Seen:
    return Seen(serving=serving, site=serving if site is None else site, running=running, live=live)


@pytest.mark.parametrize("phase", PHASES)
def test_nginx_serving_the_old_side_undoes_the_switch_at_any_step(phase: Phase) -> None:
    plan = journal.decide(_entry(phase), _seen(OLD))
    assert (plan.completed, plan.keep, plan.stop) == (False, OLD, "green")
    assert not plan.write_site and not plan.record
    # the new side had nginx's requests from the reload step on: old workers drain first
    assert plan.reload == (phase != "stage")
    assert plan.line.startswith(f"recovered an interrupted deploy of r2 (at its {phase} step)")
    assert "undone, r1 on blue serves" in plan.line


@pytest.mark.parametrize("phase", [p for p in PHASES if p != "stage"])
def test_nginx_serving_the_new_side_completes_the_switch(phase: Phase) -> None:
    live = NEW if phase == "retire" else OLD  # the retire step starts once state.json says so
    plan = journal.decide(_entry(phase), _seen(NEW, live=live))
    assert (plan.completed, plan.keep, plan.stop) == (True, NEW, "blue")
    assert plan.record == (phase != "retire")
    assert plan.reload and not plan.write_site  # before the old slot stops
    assert "completed, r2 on green serves" in plan.line


def test_a_new_side_never_checked_is_not_kept_even_if_nginx_points_at_it() -> None:
    plan = journal.decide(_entry("stage"), _seen(NEW))
    assert (plan.completed, plan.keep, plan.stop) == (False, OLD, "green")
    assert plan.write_site and plan.reload


def test_a_site_file_written_but_never_loaded_is_put_back() -> None:
    """Killed between the site file and nginx's reload: nginx serves the old side, whose
    site file goes back on disk, so that no later reload moves the traffic."""
    plan = journal.decide(_entry("reload"), _seen(OLD, site=NEW))
    assert (plan.keep, plan.stop) == (OLD, "green")
    assert plan.write_site and plan.reload and not plan.record


def test_a_new_side_that_went_down_gives_the_traffic_back_to_the_old_one() -> None:
    plan = journal.decide(_entry("record"), _seen(NEW, running=frozenset({"blue"})))
    assert (plan.completed, plan.keep, plan.stop) == (False, OLD, "green")
    assert plan.write_site and plan.reload and not plan.record


def test_an_old_side_that_went_down_leaves_the_traffic_on_the_checked_new_one() -> None:
    plan = journal.decide(_entry("reload"), _seen(OLD, running=frozenset({"green"})))
    assert (plan.completed, plan.keep, plan.stop) == (True, NEW, "blue")
    assert plan.write_site and plan.reload and plan.record


@pytest.mark.parametrize("action", journal.CONFIG_ACTIONS)
def test_a_config_change_is_undone_even_when_nginx_serves_it(action: str) -> None:
    """Its config was to be saved only after the switch: the new side runs a config that
    config.json does not hold."""
    restart = Side("r1", "green")
    plan = journal.decide(_entry("record", action, to=restart), _seen(restart))
    assert (plan.completed, plan.keep, plan.stop) == (False, OLD, "green")
    assert plan.write_site and plan.reload


def test_a_restart_tells_its_sides_apart_by_slot() -> None:
    restart = Side("r1", "green")
    done = journal.decide(_entry("reload", "restart", to=restart), _seen(restart))
    assert (done.completed, done.keep, done.stop, done.record) == (True, restart, "blue", True)
    undone = journal.decide(_entry("reload", "restart", to=restart), _seen(OLD))
    assert (undone.completed, undone.keep, undone.stop) == (False, OLD, "green")


@pytest.mark.parametrize("phase", PHASES)
def test_a_first_deploy_is_undone_to_no_site_or_completed(phase: Phase) -> None:
    first = _entry(phase, origin=None)
    undone = journal.decide(first, _seen(None, live=None))
    assert (undone.completed, undone.keep, undone.stop, undone.record) == (
        False,
        None,
        "green",
        False,
    )
    assert "serves nothing yet" in undone.line
    done = journal.decide(first, _seen(NEW, live=None))
    if phase == "stage":
        assert (done.keep, done.write_site) == (None, True)  # never checked: removed
    else:
        assert (done.completed, done.keep, done.stop, done.record) == (True, NEW, None, True)


def test_with_nothing_running_the_records_follow_nginx_and_nothing_is_stopped_wrongly() -> None:
    plan = journal.decide(_entry("record"), _seen(NEW, running=frozenset()))
    assert (plan.keep, plan.record) == (NEW, True)
    assert plan.stop == "blue"
    stray = Side("r0", "blue")
    plan = journal.decide(_entry("record"), _seen(stray, running=frozenset()))
    assert (plan.keep, plan.stop) == (stray, None)  # not this switch's: neither side stops


def test_the_journal_round_trips_is_replaced_whole_and_goes(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("flaskr")
    assert journal.load(app) is None
    entry = _entry("stage")
    journal.write(app, entry)
    assert journal.load(app) == entry
    reloading = Entry(**{**entry.__dict__, "phase": "reload", "previous_site": "server {}\n"})
    journal.write(app, reloading)
    assert journal.load(app) == reloading
    assert [p.name for p in app.root.iterdir()] == ["switch.json"]  # no temp file left
    assert journal.path_of(app).stat().st_mode & 0o777 == 0o644
    journal.clear(app)
    assert journal.load(app) is None


def test_a_journal_cut_short_or_foreign_counts_as_none(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("flaskr")
    app.root.mkdir(parents=True)
    for text in ('{"app": "flaskr", "pha', '{"phase": "nonsense"}', "[]"):
        journal.path_of(app).write_text(text)
        assert journal.load(app) is None
