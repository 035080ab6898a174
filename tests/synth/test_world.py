"""The synthetic world (fcos3d/synth/world.py): left-hand traffic mirrors right-hand traffic, attributes match
motion, and every class missing from a scene gets a static stand-in beside the ego's path."""

from __future__ import annotations

import numpy as np

from fcos3d.data.classes import CLASSES
from fcos3d.synth.world import ensure_every_class, make_world

STILL = {
    "vehicle.parked",
    "vehicle.stopped",
    "pedestrian.standing",
    "pedestrian.sitting_lying_down",
    "cycle.without_rider",
}


def test_left_hand_traffic_mirrors_the_right_hand_layout():
    right = make_world(np.random.default_rng(4), "boston-seaport", 5.0)
    left = make_world(np.random.default_rng(4), "singapore-onenorth", 5.0)
    assert right.right_hand and not left.right_hand
    assert len(left.actors) == len(right.actors) > 50
    for a, b in zip(right.actors, left.actors):
        assert (b.cls, b.s0, b.d0, b.vs, b.yaw_rel) == (a.cls, a.s0, -a.d0, a.vs, -a.yaw_rel)
    assert (left.ego_d, left.zone_side) == (-right.ego_d, -right.zone_side)
    assert [(b.d0, b.d1) for b in left.bands] == [(-b.d1, -b.d0) for b in right.bands]


def test_attributes_match_motion_and_the_world_is_seeded():
    for seed in range(4):
        world = make_world(np.random.default_rng(seed), "boston-seaport", 9.5)
        again = make_world(np.random.default_rng(seed), "boston-seaport", 9.5)
        assert world.actors == again.actors
        for a in world.actors:
            if a.attribute in STILL:
                assert a.vs == 0 and a.vd == 0, a
            elif a.attribute in ("vehicle.moving", "pedestrian.moving"):
                assert a.vs != 0, a


def test_ensure_every_class_adds_static_stand_ins_away_from_the_zone():
    world = make_world(np.random.default_rng(2), "singapore-queenstown", 1.0)
    times = np.arange(3) * 0.5
    ensure_every_class(world, np.random.default_rng(1), {}, times)  # no tracks: every class is missing
    added = world.actors[-len(CLASSES) :]
    assert [a.cls for a in added] == list(CLASSES)
    assert all(a.vs == 0 and a.vd == 0 and np.sign(a.d0) == -world.zone_side for a in added)
    # The stand-ins in the parking strip stand one after another, never on top of each other.
    strip = sorted((a for a in added if abs(abs(a.d0) - 9.75) < 1e-9), key=lambda a: a.s0)
    half_s = [abs(np.cos(a.yaw_rel)) * a.wlh[1] / 2 + abs(np.sin(a.yaw_rel)) * a.wlh[0] / 2 for a in strip]
    assert len(strip) >= 7
    for i in range(len(strip) - 1):
        assert strip[i + 1].s0 - strip[i].s0 >= half_s[i] + half_s[i + 1]
