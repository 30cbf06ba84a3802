"""B7: airbench94's own PyTorch code on the pipeline's split, the reference for the `airbench` port.

Runs Keller Jordan's legacy/airbench94.py (github.com/KellerJordan/cifar10-airbench, MIT) changed
only where a CPU and this project require: the training and validation images of `data/split`
instead of torchvision's download, float32 instead of CUDA half precision, 2 threads, no CUDA
timers, one run instead of 25, flip TTA (level 1) as the evaluate stage scores it. Network,
whitening, optimizer, schedule, Lookahead, alternating flip and translation are airbench's.

Needs PyTorch, which the pipeline does not: `pip install torch` (CPU wheel) and a checkout of
cifar10-airbench. Usage, from the repository root after `dvc repro split`:

    python benchmarks/b7_airbench_reference.py --airbench ../cifar10-airbench/legacy/airbench94.py --epochs 10
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, append_result
from src.core.cli import DefaultsHelpFormatter

# (original, replacement): each must occur in airbench94.py, so a changed upstream file fails loudly.
PATCHES = [
    ("import torchvision\nimport torchvision.transforms as T\n", ""),
    ("torch.backends.cudnn.benchmark = True",
     "torch.set_num_threads(2)\nimport numpy as np\nEPOCHS = float(sys.argv[1])\nSPLIT = sys.argv[2]"),
    ("'train_epochs': 9.9,", "'train_epochs': EPOCHS,"),
    ("        'tta_level': 2,", "        'tta_level': 1,"),
    ("""        data_path = os.path.join(path, 'train.pt' if train else 'test.pt')
        if not os.path.exists(data_path):
            dset = torchvision.datasets.CIFAR10(path, download=True, train=train)
            images = torch.tensor(dset.data)
            labels = torch.tensor(dset.targets)
            torch.save({'images': images, 'labels': labels, 'classes': dset.classes}, data_path)

        data = torch.load(data_path, map_location=torch.device(gpu))
        self.images, self.labels, self.classes = data['images'], data['labels'], data['classes']
        # It's faster to load+process uint8 data than to load preprocessed fp16 data
        self.images = (self.images.half() / 255).permute(0, 3, 1, 2).to(memory_format=torch.channels_last)

        self.normalize = T.Normalize(CIFAR_MEAN, CIFAR_STD)
""", """        name = "train" if train else "val"
        self.images = torch.tensor(np.load(f"{SPLIT}/{name}_images.npy"))
        self.labels = torch.tensor(np.load(f"{SPLIT}/{name}_labels.npy").argmax(1))
        self.classes = list(range(10))
        self.images = (self.images.float() / 255).permute(0, 3, 1, 2).to(memory_format=torch.channels_last)
        self.normalize = (lambda x: (x - CIFAR_MEAN.view(1,3,1,1)) / CIFAR_STD.view(1,3,1,1))
"""),
    ("    net = net.half().cuda()\n", ""),
    ("""    starter = torch.cuda.Event(enable_timing=True)
    ender = torch.cuda.Event(enable_timing=True)
""", """    class _E:
        def record(self): pass
        def elapsed_time(self, o): return 0.0
    starter, ender = _E(), _E()
"""),
    ("torch.cuda.synchronize()", "pass"),
]
MAIN = '''if __name__ == "__main__":
    torch.manual_seed(0)
    print_columns(logging_columns_list, is_head=True)
    acc = main(0)
    print("final tta", acc)
'''


def patched(source: str) -> str:
    for original, replacement in PATCHES:
        if original not in source:
            sys.exit(f"error: airbench94.py differs from the version this benchmark patches (missing "
                     f"{original.splitlines()[0].strip()!r}); use legacy/airbench94.py of commit f1c599c")
        source = source.replace(original, replacement)
    return source[:source.index('if __name__ == "__main__":')] + MAIN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--airbench", type=Path, required=True,
                        help="legacy/airbench94.py of cifar10-airbench; required")
    parser.add_argument("--epochs", type=float, default=10, help="airbench's epochs")
    parser.add_argument("--split", type=Path, default=REPO / "data" / "split",
                        help="the split data (`dvc repro split`)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "airbench94_cpu.py"
        script.write_text(patched(args.airbench.read_text()))
        result = subprocess.run([sys.executable, str(script), str(args.epochs), str(args.split.resolve())],
                                cwd=scratch, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: airbench94 failed\n{result.stderr[-2000:]}")
    print(result.stdout)
    # airbench's last table row: | run | eval | train_loss | train_acc | val_acc | tta_val_acc | time |
    cells = next([cell.strip() for cell in line.split("|")] for line in reversed(result.stdout.splitlines())
                 if "|   eval  |" in line)
    column = cells.index("eval")
    val_accuracy, tta_accuracy = float(cells[column + 3]), float(cells[column + 4])
    train_images, val_images = (len(np.load(args.split / f"{name}_labels.npy", mmap_mode="r"))
                                for name in ("train", "val"))
    append_result("B7 airbench94's own code on the pipeline's split",
                  f"python benchmarks/b7_airbench_reference.py --airbench {args.airbench} --epochs {args.epochs:g}", [
        f"airbench94 (PyTorch, float32 on the CPU), {args.epochs:g} epochs on the {train_images:,} training images "
        f"of `{args.split}`, scored on its {val_images:,} validation images:",
        "",
        f"- validation accuracy **{100 * val_accuracy:.2f} %**, {100 * tta_accuracy:.2f} % with flip TTA",
    ])


if __name__ == "__main__":
    main()
