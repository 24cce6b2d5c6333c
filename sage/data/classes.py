"""Class vocabularies of the raw datasets SAGE reads (facts of the datasets, not of SAGE).

SF3D (State Farm Distracted Driver Detection, Kaggle 2016) names its classes c0..c9;
100-Driver (Wang et al., 2023) uses 22 folders ``C{k}_{Name}`` whose label in the official
split files is k - 1. Keep both orders exactly: labels are never derived from folder sort
order (``ImageFolder`` would put ``C10_`` before ``C1_``).
"""

SF3D_CLASSES: dict[str, str] = {
    "c0": "Normal Driving",
    "c1": "Texting Right",
    "c2": "Talking on the Phone Right",
    "c3": "Texting Left",
    "c4": "Talking on the Phone Left",
    "c5": "Operating the Radio",
    "c6": "Drinking",
    "c7": "Reaching Behind",
    "c8": "Hair and Makeup",
    "c9": "Talking to Passenger",
}

DRIVER100_CLASSES: list[str] = [
    "C1_Drive_Safe",
    "C2_Sleep",
    "C3_Yawning",
    "C4_Talk_Left",
    "C5_Talk_Right",
    "C6_Text_Left",
    "C7_Text_Right",
    "C8_Make_Up",
    "C9_Look_Left",
    "C10_Look_Right",
    "C11_Look_Up",
    "C12_Look_Down",
    "C13_Smoke_Left",
    "C14_Smoke_Right",
    "C15_Smoke_Mouth",
    "C16_Eat_Left",
    "C17_Eat_Right",
    "C18_Operate_Radio",
    "C19_Operate_GPS",
    "C20_Reach_Behind",
    "C21_Leave_Steering_Wheel",
    "C22_Talk_to_Passenger",
]


def driver100_label(folder: str) -> int:
    """Official integer label of a 100-Driver class folder (C-number minus one)."""
    if folder not in DRIVER100_CLASSES:
        raise ValueError(f"unknown 100-Driver class folder {folder!r}")
    return int(folder.split("_", 1)[0][1:]) - 1
