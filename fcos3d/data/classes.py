"""The nuScenes detection classes and attributes, in the order the model's outputs use (torch-free)."""

CLASSES = (
    "car",
    "truck",
    "trailer",
    "bus",
    "construction_vehicle",
    "bicycle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "barrier",
)

# Index len(ATTRIBUTES) - 1 ("") means "no attribute"; the result JSON writes "" for it (the devkit's rule).
ATTRIBUTES = (
    "cycle.with_rider",
    "cycle.without_rider",
    "pedestrian.moving",
    "pedestrian.standing",
    "pedestrian.sitting_lying_down",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
    "",
)
NO_ATTRIBUTE = len(ATTRIBUTES) - 1

# The attribute reported for a class when the predicted one does not belong to it (mmdet3d's rule):
# the devkit scores attributes only for classes that have them.
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked",
    "truck": "vehicle.parked",
    "trailer": "vehicle.parked",
    "bus": "vehicle.moving",
    "construction_vehicle": "vehicle.parked",
    "bicycle": "cycle.without_rider",
    "motorcycle": "cycle.without_rider",
    "pedestrian": "pedestrian.moving",
    "traffic_cone": "",
    "barrier": "",
}

# Which attributes a class may carry (the devkit's attribute groups).
CLASS_ATTRIBUTES = {
    "car": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "truck": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "trailer": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "bus": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "construction_vehicle": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
    "motorcycle": ("cycle.with_rider", "cycle.without_rider"),
    "pedestrian": ("pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down"),
    "traffic_cone": (),
    "barrier": (),
}

# nuScenes category names (category.json) that map onto each detection class (the devkit's mapping).
CATEGORY_TO_CLASS = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.trailer": "trailer",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.construction": "construction_vehicle",
    "vehicle.bicycle": "bicycle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "movable_object.barrier": "barrier",
}

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
