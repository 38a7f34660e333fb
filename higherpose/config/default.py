"""Default configuration (yacs): the union of the fields used by upstream HigherHRNet
(bottom-up) and HRNet/HRFormer top-down experiment YAMLs, so their files load unchanged.

Field names are upstream's. Fields that only higherpose adds are marked "(higherpose)".
"""
from yacs.config import CfgNode as CN

_C = CN()

# ------------------------------------------------------------------ run and environment
_C.OUTPUT_DIR = "output"
_C.LOG_DIR = "log"
_C.DATA_DIR = ""
_C.GPUS = (0,)
_C.WORKERS = 4
_C.PRINT_FREQ = 20
_C.AUTO_RESUME = False
_C.PIN_MEMORY = True
_C.RANK = 0
_C.VERBOSE = True
_C.DIST_BACKEND = "nccl"
_C.MULTIPROCESSING_DISTRIBUTED = True
_C.SEED = 0  # (higherpose) base seed for data order and augmentation

_C.FP16 = CN()
_C.FP16.ENABLED = False
_C.FP16.STATIC_LOSS_SCALE = 1.0
_C.FP16.DYNAMIC_LOSS_SCALE = False
_C.FP16.DTYPE = "float16"  # (higherpose) "float16" (with a GradScaler) or "bfloat16"

_C.CUDNN = CN()
_C.CUDNN.BENCHMARK = True
_C.CUDNN.DETERMINISTIC = False
_C.CUDNN.ENABLED = True

# ------------------------------------------------------------------ model
_C.MODEL = CN()
_C.MODEL.NAME = "pose_higher_hrnet"
_C.MODEL.INIT_WEIGHTS = True
_C.MODEL.PRETRAINED = ""
_C.MODEL.NUM_JOINTS = 17
_C.MODEL.TAG_PER_JOINT = True
_C.MODEL.SYNC_BN = False
# Network-specific structure (HRNet stages, deconvolution head, transformer neck, ...).
_C.MODEL.EXTRA = CN(new_allowed=True)
# top-down fields
_C.MODEL.TARGET_TYPE = "gaussian"
_C.MODEL.IMAGE_SIZE = [192, 256]  # width, height
_C.MODEL.HEATMAP_SIZE = [48, 64]  # width, height
_C.MODEL.SIGMA = 2

# ------------------------------------------------------------------ loss
_C.LOSS = CN()
_C.LOSS.NUM_STAGES = 1
_C.LOSS.WITH_HEATMAPS_LOSS = (True,)
_C.LOSS.HEATMAPS_LOSS_FACTOR = (1.0,)
_C.LOSS.WITH_AE_LOSS = (True,)
_C.LOSS.AE_LOSS_TYPE = "max"
_C.LOSS.PUSH_LOSS_FACTOR = (0.001,)
_C.LOSS.PULL_LOSS_FACTOR = (0.001,)
# top-down fields
_C.LOSS.USE_TARGET_WEIGHT = True
_C.LOSS.USE_DIFFERENT_JOINTS_WEIGHT = False
_C.LOSS.USE_OHKM = False
_C.LOSS.TOPK = 8

# ------------------------------------------------------------------ dataset
_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.DATASET = "coco_kpt"
_C.DATASET.DATASET_TEST = "coco"
_C.DATASET.NUM_JOINTS = 17
_C.DATASET.MAX_NUM_PEOPLE = 30
_C.DATASET.TRAIN = "train2017"
_C.DATASET.TEST = "val2017"
_C.DATASET.DATA_FORMAT = "jpg"
# bottom-up augmentation and targets
_C.DATASET.MAX_ROTATION = 30
_C.DATASET.MIN_SCALE = 0.75
_C.DATASET.MAX_SCALE = 1.25
_C.DATASET.SCALE_TYPE = "short"
_C.DATASET.MAX_TRANSLATE = 40
_C.DATASET.INPUT_SIZE = 512
_C.DATASET.OUTPUT_SIZE = [128, 256]
_C.DATASET.FLIP = 0.5
_C.DATASET.SIGMA = -1
_C.DATASET.SCALE_AWARE_SIGMA = False
_C.DATASET.BASE_SIZE = 256.0
_C.DATASET.BASE_SIGMA = 2.0
_C.DATASET.INT_SIGMA = False
_C.DATASET.WITH_CENTER = False
# top-down fields
_C.DATASET.TRAIN_SET = "train2017"
_C.DATASET.TEST_SET = "val2017"
_C.DATASET.HYBRID_JOINTS_TYPE = ""
_C.DATASET.SELECT_DATA = False
_C.DATASET.SCALE_FACTOR = 0.35
_C.DATASET.ROT_FACTOR = 45
_C.DATASET.PROB_HALF_BODY = 0.0
_C.DATASET.NUM_JOINTS_HALF_BODY = 8
_C.DATASET.COLOR_RGB = True
# (higherpose) synthetic crowds: where tools/make_synthetic.py writes, and how much
_C.DATASET.SYNTHETIC = CN(new_allowed=True)

# ------------------------------------------------------------------ training
_C.TRAIN = CN()
# torch.compile the training network (CPU and GPU; the ops have fake kernels), and its mode
# ("" = default, "reduce-overhead", "max-autotune").
_C.TRAIN.COMPILE = False
_C.TRAIN.COMPILE_MODE = ""
_C.TRAIN.LR_FACTOR = 0.1
_C.TRAIN.LR_STEP = [90, 110]
_C.TRAIN.LR = 0.001
_C.TRAIN.OPTIMIZER = "adam"
_C.TRAIN.MOMENTUM = 0.9
_C.TRAIN.WD = 0.0001
_C.TRAIN.NESTEROV = False
_C.TRAIN.GAMMA1 = 0.99
_C.TRAIN.GAMMA2 = 0.0
_C.TRAIN.BEGIN_EPOCH = 0
_C.TRAIN.END_EPOCH = 140
_C.TRAIN.RESUME = False
_C.TRAIN.CHECKPOINT = ""
_C.TRAIN.IMAGES_PER_GPU = 32
_C.TRAIN.BATCH_SIZE_PER_GPU = 32  # top-down name of IMAGES_PER_GPU
_C.TRAIN.SHUFFLE = True
_C.TRAIN.WARMUP_ITERS = 0  # (higherpose) linear warm-up iterations
_C.TRAIN.WARMUP_RATIO = 0.001  # (higherpose) warm-up start factor
_C.TRAIN.CLIP_GRAD_NORM = 0.0  # (higherpose) 0 = off
_C.TRAIN.MAX_ITERS_PER_EPOCH = 0  # (higherpose) 0 = whole epoch; >0 cuts epochs (smoke runs)
_C.TRAIN.CHECKPOINT_EVERY_ITERS = 0  # (higherpose) >0: also write checkpoint.pth.tar mid-epoch

# ------------------------------------------------------------------ testing
_C.TEST = CN()
_C.TEST.FLIP_TEST = True
_C.TEST.ADJUST = True
_C.TEST.REFINE = True
_C.TEST.SCALE_FACTOR = [1]
_C.TEST.DETECTION_THRESHOLD = 0.2
_C.TEST.TAG_THRESHOLD = 1.0
_C.TEST.USE_DETECTION_VAL = True
_C.TEST.IGNORE_TOO_MUCH = False
_C.TEST.MODEL_FILE = ""
_C.TEST.IGNORE_CENTER = True
_C.TEST.NMS_KERNEL = 3
_C.TEST.NMS_PADDING = 1
_C.TEST.PROJECT2IMAGE = False
_C.TEST.WITH_HEATMAPS = (True,)
_C.TEST.WITH_AE = (True,)
_C.TEST.LOG_PROGRESS = False
_C.TEST.IMAGES_PER_GPU = 1
# top-down fields
_C.TEST.BATCH_SIZE_PER_GPU = 32
_C.TEST.POST_PROCESS = True
_C.TEST.SHIFT_HEATMAP = True
_C.TEST.USE_GT_BBOX = True
_C.TEST.IMAGE_THRE = 0.0
_C.TEST.NMS_THRE = 1.0
_C.TEST.SOFT_NMS = False
_C.TEST.OKS_THRE = 0.9
_C.TEST.IN_VIS_THRE = 0.2
_C.TEST.COCO_BBOX_FILE = ""
_C.TEST.BBOX_THRE = 1.0

# ------------------------------------------------------------------ debug output
_C.DEBUG = CN()
_C.DEBUG.DEBUG = False
_C.DEBUG.SAVE_BATCH_IMAGES_GT = False
_C.DEBUG.SAVE_BATCH_IMAGES_PRED = False
_C.DEBUG.SAVE_HEATMAPS_GT = False
_C.DEBUG.SAVE_HEATMAPS_PRED = False
_C.DEBUG.SAVE_TAGMAPS_PRED = False


def get_default_config():
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
