"""Files the commands read and write, against special files, two writers, a full disk and outputs named like inputs.

Reading: every hand-written file (labels, questions, schema, config, split, answers) goes through one bounded
reader of regular files, so a FIFO, /dev/zero or /dev/urandom in its place is refused in one line (exit 2), never
read for ever. Writing: a run folder, grid cell or evaluation folder has one writer at a time (a second train is
refused, a grid passes the cell over, evaluate waits; a killed holder frees it); a full disk (ENOSPC, EDQUOT, a real
tmpfs out of bytes or inodes) at any step of an atomic write keeps the old file and is one line with exit 1, also
mid-training (the last good checkpoint is named and --resume goes on) and while building the image cache; no
command writes its output over one of its inputs; and every JSON file written is strict JSON (no NaN).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import fashionattr.training.run as training
from corpus import (
    ATOMIC_WRITE_STEPS,
    DISK_FULL_COMMANDS,
    DISK_FULL_ERRNOS,
    OVERWRITE_CASES,
    A,
    B,
    OverwriteCase,
    special_file,
)
from fashionattr.cli import main
from fashionattr.data.cache import CACHE_DIRNAME
from fashionattr.data.labels import LABELS_RELPATH
from fashionattr.run_dir import RunDir
from helpers import QUICK_TRAIN, assert_no_traceback, cli_command, refused, strict_loads, tiny_root

# --- reading: only regular files, and only so much of them ------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_safe_reader_bounds_what_it_reads(tmp_path):
    from fashionattr.io import FileReadError, read_regular_file

    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * 2048)
    assert read_regular_file(big, 2048) == b"x" * 2048
    with pytest.raises(FileReadError, match="over the"):
        read_regular_file(big, 1024)
    special_file(tmp_path / "zero.csv", "zero")
    with pytest.raises(FileReadError, match="character device"):
        read_regular_file(tmp_path / "zero.csv", 1024)


SPECIAL_TEXT_FILES = [
    ("label-fifo", "data/Annotations/label.csv", "fifo", ["check", "{data}"], "named pipe"),
    ("label-dev-zero", "data/Annotations/label.csv", "zero", ["check", "{data}"], "character device"),
    ("label-dev-urandom", "data/Annotations/label.csv", "urandom", ["split", "{data}"], "character device"),
    ("label-fifo-train", "data/Annotations/label.csv", "fifo", ["train", "{data}", "--out", "{tmp}/run"], "named pipe"),
    ("questions-fifo", "data/Tests/question.csv", "fifo", ["check", "{data}"], "named pipe"),
    ("schema-json-fifo", "data/schema.json", "fifo", ["check", "{data}"], "named pipe"),
    ("schema-yaml-dev-zero", "data/schema.yaml", "zero", ["check", "{data}"], "character device"),
    ("config-fifo", "config.yaml", "fifo", ["train", "{data}", "--config", "{tmp}/config.yaml"], "named pipe"),
    ("config-dev-urandom", "config.json", "urandom", ["train", "{data}", "--config", "{tmp}/config.json"],
     "character device"),
    ("split-fifo", "split.csv", "fifo", ["train", "{data}", "--split-file", "{tmp}/split.csv", "--out", "{tmp}/run"],
     "named pipe"),
    ("answers-fifo", "answers.csv", "fifo", ["evaluate", "--answers", "{tmp}/answers.csv", "--labels",
                                             "{data}/Annotations/label.csv"], "named pipe"),
    ("labels-dev-zero", "labels.csv", "zero", ["evaluate", "--answers", "{tmp}/good-answers.csv", "--labels",
                                              "{tmp}/labels.csv"], "character device"),
]  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("relative", "kind", "argv", "words"), [case[1:] for case in SPECIAL_TEXT_FILES],
                         ids=[case[0] for case in SPECIAL_TEXT_FILES])  # fmt: skip
def test_special_label_schema_config_split_and_answer_files_are_refused(synthetic_data, tmp_path, relative,
                                                                        kind, argv, words):  # fmt: skip
    data = tiny_root(tmp_path / "data", synthetic_data)
    (tmp_path / "good-answers.csv").write_text(A.replace("nynnnnnn", "0;1;0;0;0;0;0;0"))
    special_file(tmp_path / relative, kind)
    command = [part.format(data=data, tmp=tmp_path) for part in argv]
    refused(command, f"{tmp_path / relative}: ", words)


def test_a_fifo_label_file_in_a_subprocess_ends_with_exit_2(synthetic_data, tmp_path):
    data = tiny_root(tmp_path / "data", synthetic_data)
    special_file(data / LABELS_RELPATH, "fifo")
    result = subprocess.run(cli_command("check", data), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "is a named pipe (FIFO), not a regular file" in result.stderr
    assert_no_traceback(result.stderr)


# --- two writers of one folder ----------------------------------------------------------------------------------


HOLD_LOCK = """
import sys, time
from fashionattr.run_dir import lock_folder
with lock_folder(sys.argv[1], "run folder"):
    print("held", flush=True)
    time.sleep(300)
"""


@contextlib.contextmanager
def held_by_another_process(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process holding `folder`'s lock, as a training run writing into it does."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


TRY_LOCK = """
import sys
from fashionattr.run_dir import FolderBusyError, lock_folder
try:
    with lock_folder(sys.argv[1], "run folder"):
        print("free")
except FolderBusyError as exc:
    print(exc)
"""


def try_lock_from_another_process(folder: Path) -> str:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], capture_output=True, text=True,
                          timeout=60).stdout.strip()  # fmt: skip


@pytest.mark.timeout(240)
def test_a_second_train_into_a_busy_run_folder_is_refused_and_a_killed_one_leaves_it_free(
    synthetic_data, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    train = ["train", str(synthetic_data), "--out", str(out), "--attributes", "coat_length", *QUICK_TRAIN]
    with held_by_another_process(out) as first:
        for extra in ([], ["--resume"], ["--seed", "2"]):
            refused([*train, *extra], f"{out}: another fashionattr process is writing this run folder "
                    f"(pid {first.pid}, started ", "choose another output folder")  # fmt: skip
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the second writer
        first.send_signal(signal.SIGKILL)  # a run killed while it held the folder
        first.wait(timeout=30)
    seen_while_training: list[str] = []
    real_epoch = training.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        seen_while_training.append(try_lock_from_another_process(out))
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", train_one_epoch)
    assert main(train) == 0, capsys.readouterr().err  # the kernel released the dead holder's lock
    assert len(seen_while_training) == 1
    assert seen_while_training[0].startswith(f"{out}: another fashionattr process is writing this run folder (pid "
                                             f"{os.getpid()}, started ")  # fmt: skip
    assert try_lock_from_another_process(out) == "free"  # and the finished run let it go


def test_per_attribute_runs_grid_cells_and_evaluations_take_their_folder_in_turn(synthetic_data, trained_run,
                                                                                tmp_path, capsys):  # fmt: skip
    out = tmp_path / "per-attribute"
    with held_by_another_process(out / "coat_length") as holder:
        refused(["train", str(synthetic_data), "--layout", "per-attribute", "--attributes", "coat_length,sleeve_length",
                 "--out", str(out), *QUICK_TRAIN], f"{out / 'coat_length'}: another fashionattr process "
                f"is writing this run folder (pid {holder.pid}")  # fmt: skip
    assert not (out / "sleeve_length").exists()  # refused before anything was trained
    grid = tmp_path / "grid"
    cell = grid / "per-attribute" / "test_resnet" / "coat_length"
    with held_by_another_process(cell):
        assert main(["grid", str(synthetic_data), "--archs", "test_resnet", "--attributes", "coat_length", "--out",
                     str(grid), *QUICK_TRAIN[2:]]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert_no_traceback(captured.err)
    assert f"per-attribute/test_resnet/coat_length: passed over: {cell}: another fashionattr process" in captured.out
    assert "1 cell(s) passed over, being trained by another process" in captured.out
    assert not (grid / "failures.json").exists() and not RunDir(cell).last.exists()
    evaluation = tmp_path / "eval"
    codes: list[int] = []
    with held_by_another_process(evaluation) as holder:
        command = threading.Thread(target=lambda: codes.append(main(["evaluate", str(trained_run.run), "--out",
                                                                      str(evaluation), "--workers", "0"])))  # fmt: skip
        command.start()
        command.join(timeout=1.0)
        assert command.is_alive() and not (evaluation / "scores.json").exists()  # it waits for the other writer
        holder.kill()
        command.join(timeout=180)
    assert codes == [0]
    assert_no_traceback(capsys.readouterr().err)
    assert (evaluation / "scores.json").is_file() and (evaluation / "report.md").is_file()


# --- a full disk ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", DISK_FULL_ERRNOS)
@pytest.mark.parametrize("step", ATOMIC_WRITE_STEPS)
def test_a_full_disk_at_any_step_of_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch, step, code):
    import fashionattr.io as io_module
    from fashionattr.errors import DiskFullError

    folder = tmp_path / ("new-folder" if step == "mkdir" else "folder")
    target = folder / "scores.json"
    if step != "mkdir":
        folder.mkdir()
        target.write_text("OLD\n")
    full = OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    def fail(*args, **kwargs):
        raise full

    patches = {"mkdir": (Path, "mkdir"), "mkstemp": (io_module.tempfile, "mkstemp"), "fsync": (os, "fsync"),
               "replace": (os, "replace")}  # fmt: skip
    if step in patches:
        monkeypatch.setattr(*patches[step], fail)
    with pytest.raises(DiskFullError) as info, io_module.atomic_open(target) as handle:
        handle.write("NEW\n")
        if step == "write":
            fail()
    monkeypatch.undo()
    assert str(info.value).startswith(f"disk full while writing {target} ({DISK_FULL_ERRNOS[code]}); its old content")
    assert info.value.path == str(target)
    if step == "mkdir":
        assert not folder.exists()
    else:
        assert sorted(p.name for p in folder.iterdir()) == ["scores.json"] and target.read_text() == "OLD\n"


def fsync_fails_for(monkeypatch: pytest.MonkeyPatch, name: str, after: int = 0) -> list[str]:
    """Make the flush of temporary files for `name` fail with ENOSPC, after `after` of them succeeded."""
    real = os.fsync
    written: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if Path(path).name.startswith(f".{name}."):
            written.append(path)
            if len(written) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return written


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("argv", "target"), [case[1:] for case in DISK_FULL_COMMANDS],
                         ids=[case[0] for case in DISK_FULL_COMMANDS])  # fmt: skip
def test_a_full_disk_is_one_line_and_exit_1_and_the_old_file_stays(trained_run, tmp_path, monkeypatch,
                                                                   argv, target):  # fmt: skip
    path = tmp_path / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("OLD\n")
    fsync_fails_for(monkeypatch, path.name)
    command = [part.format(data=trained_run.data, run=trained_run.run, tmp=tmp_path) for part in argv]
    refused(command, f"disk full while writing {path} (No space left on device)", code=1)
    assert path.read_text() == "OLD\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.timeout(240)
def test_a_disk_filling_up_during_training_keeps_the_last_good_checkpoint_and_resumes(synthetic_data, tmp_path,
                                                                                      monkeypatch, capsys):  # fmt: skip
    from fashionattr.checkpoint import load_checkpoint

    out = tmp_path / "run"
    train = ["train", str(synthetic_data), "--out", str(out), "--attributes", "coat_length", *QUICK_TRAIN,
             "--epochs", "2", "--max-steps-per-epoch", "1"]  # fmt: skip
    written = fsync_fails_for(monkeypatch, "last.pt", after=1)  # epoch 1's last.pt is written, epoch 2's is not
    refused(train, f"{out}: disk full while writing {out / 'last.pt'}; the last good checkpoint is "
            f"{out / 'last.pt'} (epoch 1); free some space, then continue with --resume", code=1)  # fmt: skip
    assert len(written) == 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 0  # epoch 1, whole
    assert not list(out.glob(".*.tmp")) and not RunDir(out).is_finished
    monkeypatch.undo()
    assert main([*train, "--resume"]) == 0, capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and RunDir(out).is_finished


def test_a_full_disk_under_tensorboard_names_its_folder_and_the_checkpoint_just_saved(synthetic_data, tmp_path,
                                                                                      monkeypatch):  # fmt: skip
    out = tmp_path / "run"

    def log_epoch(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(training, "log_epoch", log_epoch)
    refused(["train", str(synthetic_data), "--out", str(out), "--attributes", "coat_length", *QUICK_TRAIN,
             "--max-steps-per-epoch", "1"], f"{out}: disk full while writing {out / 'tensorboard'}; the last "
            f"good checkpoint is {out / 'last.pt'} (epoch 1)", code=1)  # fmt: skip


REAL_FULL_DISK = """
set -e
mount -t tmpfs -o size=64k tmpfs "$1/bytes"
mount -t tmpfs -o size=1m,nr_inodes=3 tmpfs "$1/inodes"
printf 'OLD\\n' > "$1/bytes/split.csv"
dd if=/dev/zero of="$1/bytes/filler" bs=1k count=1000 2>/dev/null || true
touch "$1/inodes/a" "$1/inodes/b" 2>/dev/null || true
set +e
for where in bytes inodes; do
    "$2" -m fashionattr split "$3" --out "$1/$where/split.csv" --force 2>"$1/$where.err"
    echo "$where $?"
    ls -A "$1/$where" | tr '\\n' ' ' > "$1/$where.files"
    cat "$1/$where/split.csv" > "$1/$where.kept" 2>/dev/null
done
"""


@pytest.mark.timeout(120)
def test_a_really_full_file_system_gives_the_same_one_line(synthetic_data, tmp_path):
    """On real tmpfs mounts (in a user namespace, so no privileges are needed): no bytes left, then no inodes left."""
    for name in ("bytes", "inodes"):
        (tmp_path / name).mkdir()
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", REAL_FULL_DISK, "sh", str(tmp_path),
               sys.executable, str(synthetic_data)]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=100)
    except FileNotFoundError:
        pytest.skip("no unshare command here")
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {result.stderr.strip()[:200]}")
    assert result.stdout.split() == ["bytes", "1", "inodes", "1"], result.stdout + result.stderr
    for name, reason in (("bytes", "No space left on device"), ("inodes", "No space left on device")):
        err = (tmp_path / f"{name}.err").read_text()
        assert_no_traceback(err)
        assert err.startswith(f"fashionattr split: error: disk full while writing {tmp_path}/{name}/split.csv "
                              f"({reason}); its old content, if any, is kept"), err  # fmt: skip
        assert ".tmp" not in (tmp_path / f"{name}.files").read_text()  # the temporary file was removed
    assert (tmp_path / "bytes.kept").read_text() == "OLD\n"


def test_a_full_disk_while_building_the_image_cache_is_refused_before_any_pixel_is_written(
    synthetic_data, tmp_path, monkeypatch
):
    root = tiny_root(tmp_path / "data", synthetic_data, A + B)

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    refused(
        ["prepare", str(root), "--arch", "test_resnet", "--size", "32", "--workers", "1"],
        f"disk full while building the image cache {root / CACHE_DIRNAME}/",
        "train with --cache off",
        code=1,
    )
    assert not [p for p in (root / CACHE_DIRNAME).rglob("*") if p.is_file()]


# --- outputs never replace inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", OVERWRITE_CASES, ids=[case.id for case in OVERWRITE_CASES])
def test_no_command_writes_over_one_of_its_inputs(trained_run, tmp_path, capsys, case: OverwriteCase):
    data = tmp_path / "data"
    shutil.copytree(trained_run.data, data)
    photo = tmp_path / "photo.jpg"
    shutil.copyfile(next((data / "Images" / "coat_length_labels").glob("*.jpg")), photo)
    run = tmp_path / "run"
    shutil.copytree(trained_run.run, run)
    alias = tmp_path / "alias.jpg"
    if case.prepare == "hard link":
        os.link(photo, alias)
    elif case.prepare == "symbolic link":
        alias.symlink_to(photo)
    elif case.prepare == "split":
        assert main(["split", str(data)]) == 0
    elif case.prepare == "sheet":
        shutil.copyfile(photo, tmp_path / "contact_sheet.png")
    elif case.prepare == "png in the dataset":
        shutil.copyfile(photo, data / "Images" / "extra.png")
    fields = {"data": data, "run": run, "photo": photo, "tmp": tmp_path}
    victim = Path(case.victim.format(**fields))
    before = victim.read_bytes()
    capsys.readouterr()
    assert main([part.format(**fields) for part in case.argv]) == 2
    err = capsys.readouterr().err
    assert case.words in err and "writing there would replace it" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert victim.read_bytes() == before


# --- every JSON written is strict JSON --------------------------------------------------------------------------


def test_non_finite_numbers_become_null_with_a_note(tmp_path):
    from fashionattr.io import write_json

    write_json(tmp_path / "x.json", {"precision": float("nan"), "rows": [1.0, float("inf")], "count": 3})
    assert strict_loads((tmp_path / "x.json").read_text()) == {
        "precision": None, "precision_note": "not a number (NaN)", "rows": [1.0, None], "count": 3}  # fmt: skip


def test_json_is_written_through_the_one_strict_writer():
    """Outside `fashionattr.io`, no module serialises JSON itself (the catalogue's stored metadata and the service's
    error bodies, owned by their packages, hold no numbers that can be NaN)."""
    source = Path(__file__).resolve().parent.parent / "src" / "fashionattr"
    owned_elsewhere = {"catalog", "serve"}
    offenders = [str(path.relative_to(source)) for path in source.rglob("*.py")
                 if path.name != "io.py" and path.relative_to(source).parts[0] not in owned_elsewhere
                 and ("json.dump(" in path.read_text() or "json.dumps(" in path.read_text())]  # fmt: skip
    assert not offenders, f"write JSON through fashionattr.io.json_text / write_json: {offenders}"
