"""The router (src/cluster.c, through tests/cluster/router_probe) against a scripted fake
cluster (fakecluster.py) that sends exact replies on cue: MOVED without a host, ASK
(ASKING then the command, on the target only), TRYAGAIN, LOADING and MASTERDOWN (resent
after a back-off, given up at the deadline), and a Redis without CLUSTER SHARDS (the map
by CLUSTER SLOTS, remembered). Takes no stack.
"""

import time

import cluster as clusterlib
import fakecluster
from fakecluster import Err
from test_cluster import Probe


def _key_slot(k):
    return clusterlib.key_slot(k)


def test_cluster_fake_moved_without_a_host_goes_to_the_senders_host_and_updates_the_slot():
    with fakecluster.FakeCluster(2) as fc:
        a, b = fc.nodes
        fc.data["fk1"] = "v1"
        slot = _key_slot("fk1")
        a.script(("GET", "fk1"), Err("MOVED %d :%d" % (slot, b.port)))
        with Probe(fc, "--refresh-ms", "600000") as p:
            assert p("fk1 GET fk1") == "OK $v1"
            assert p("fk1 SET fk1 v2") == "OK +OK"
            s = p.stats()
        assert len(a.commands("GET")) == 1 and a.commands("SET") == []
        assert [c[0] for c in b.log if c[0] in ("GET", "SET")] == ["GET", "SET"], b.log
        assert s["moved"] == 1 and s["refreshes"] == 1, s


def test_cluster_fake_ask_sends_asking_then_the_command_to_the_target_for_that_command_only():
    with fakecluster.FakeCluster(2) as fc:
        a, b = fc.nodes
        fc.data["fk2"] = "v"
        a.script(("GET", "fk2"), Err("ASK %d 127.0.0.1:%d" % (_key_slot("fk2"), b.port)))
        with Probe(fc) as p:
            assert p("fk2 GET fk2") == "OK $v"
            assert p("fk2 GET fk2") == "OK $v"
            s = p.stats()
        asked = [c for c in b.log if c[0] in ("ASKING", "GET")]
        assert asked == [["ASKING"], ["GET", "fk2"]], b.log
        assert len(a.commands("GET")) == 2, a.log     # the map did not change
        assert s["ask"] == 1 and s["moved"] == 0, s


def test_cluster_fake_tryagain_loading_and_masterdown_are_resent_after_a_back_off():
    replies = {
        "TRYAGAIN": "TRYAGAIN Multiple keys request during rehashing of slot",
        "LOADING": "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN": "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is "
                      "set to 'no'.",
    }
    for word, text in replies.items():
        with fakecluster.FakeCluster(1) as fc:
            a = fc.nodes[0]
            k = "fk3" + word
            fc.data[k] = "v"
            a.script(("GET", k), Err(text))
            a.script(("GET", k), Err(text))
            with Probe(fc) as p:
                t0 = time.monotonic()
                assert p("%s GET %s" % (k, k)) == "OK $v", word
                took = time.monotonic() - t0
                s = p.stats()
            assert len(a.commands("GET")) == 3, (word, a.log)
            assert s[word.lower()] == 2, (word, s)
            assert 0.02 <= took < 1.5, (word, took)         # 10 + 20 ms of back-off
            # TRYAGAIN asks for no map reload; LOADING and MASTERDOWN ask for one, put off
            # while the last was less than 100 ms before (on a busy machine the back-off
            # can outlast that, so a reload per 100 ms taken is allowed)
            loads = len(a.commands("CLUSTER"))
            if word == "TRYAGAIN":
                assert loads == 1, (word, a.log)
            else:
                assert 1 <= loads <= 1 + int(took / 0.1), (word, took, a.log)


def test_cluster_fake_loading_until_the_deadline_is_unavailable_in_time():
    with fakecluster.FakeCluster(1) as fc:
        a = fc.nodes[0]
        for _ in range(200):
            a.script(("GET", "fk4"), Err("LOADING Redis is loading the dataset in memory"))
        with Probe(fc, "--deadline-ms", "400") as p:
            t0 = time.monotonic()
            ans = p("fk4 GET fk4")
            took = time.monotonic() - t0
            s = p.stats()
        assert ans.startswith("UNAVAILABLE ") and "LOADING" in ans, ans
        assert 0.35 <= took < 1.5, took
        assert s["loading"] >= 3, s
        # the map reloads it asked for: at most one per 100 ms
        assert s["refreshes"] <= 1 + took * 10, (s, took)


def test_cluster_fake_a_redis_without_cluster_shards_is_mapped_by_cluster_slots_from_then_on():
    with fakecluster.FakeCluster(2) as fc:
        a, b = fc.nodes
        fc.shards = False
        fc.owner[_key_slot("fk5")] = 1
        fc.data["fk5"] = "v"
        a.script(("GET", "fk6"), Err("CLUSTERDOWN The cluster is down"))
        with Probe(fc) as p:
            assert p("fk5 GET fk5") == "OK $v"              # on b: mapped by SLOTS
            assert p("fk6 GET fk6") == "OK nil"             # CLUSTERDOWN: map stale
            time.sleep(0.15)
            assert p("fk5 GET fk5") == "OK $v"              # reloaded: SLOTS only
            s = p.stats()
        cl = [c[1].upper() for c in a.log + b.log if c[0] == "CLUSTER"]
        assert cl == ["SHARDS", "SLOTS", "SLOTS"], cl
        assert s["refreshes"] == 2 and s["moved"] == 0, s
