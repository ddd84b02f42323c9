"""One rule for a video whose last frames do not decode (hydra_x.data.failures), in training, evaluation and
the CLI: a clip that needs a frame past the last one that decodes is refused; a clip drawn entirely from the
frames before is used as a complete file would give it; the CLI, whose clip is the whole video, refuses it."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader
from hydra_x.data import folders as folders_module
from hydra_x.data.folder_source import FolderSource
from hydra_x.data.folders import ClipSpec, SampleError, VideoExtent, decode_clip
from hydra_x.data.media import MediaError
from hydra_x.data.video import iter_video_frames, write_video
from hydra_x.eval.protocols import resolve_protocol
from hydra_x.eval.samples import EvalData, Sample, Skipped

FRAMES, RATE = 60, 25  # the header announces 60 frames at 25 fps
KEEP = lambda h, w: lambda x: x  # no resize, no crop


def coded_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """Frame i is flat grey at level 4 i + 4 (tests.media_fixtures' index videos stop at 32 frames)."""
    v = torch.tensor([4 * i + 4 for i in range(frames)], dtype=torch.float32) / 127.5 - 1
    return v[None, :, None, None].expand(3, frames, height, width).contiguous()


def frame_index(clip: torch.Tensor) -> list[int]:
    means = ((clip.mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
    return [round((m - 4) / 4) for m in means]


def _decodes(path) -> tuple[int, bool]:
    """(frames that decode from the start, whether a decoding error stopped it)."""
    with av.open(str(path)) as container:
        count = 0
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError:
            return count, True
    return count, False


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """(folder, the cut file, frames that decode): a faststart MP4 cut inside its media data, so FFmpeg stops
    quietly after `good` of the 60 frames; and the intact file next to it."""
    folder = tmp_path_factory.mktemp("cut")
    write_video(folder / "intact.mp4", coded_clip(FRAMES, 32, 32), RATE)
    raw = (folder / "intact.mp4").read_bytes()
    # FFmpeg stops quietly where the file ends on a packet's end (elsewhere the torn packet is an error), so cut
    # there: at fixed fractions of the file the cut hit a packet's end by chance, and multi-threaded libx264 does
    # not give the same bytes every run (hydra_x.data.video.write_video), which once left no fraction that did.
    with av.open(str(folder / "intact.mp4")) as container:
        ends = sorted(p.pos + p.size for p in container.demux(video=0) if p.pos is not None and p.size)
    for end in ends[FRAMES // 2 : FRAMES * 3 // 4]:
        (folder / "cut.mp4").write_bytes(raw[:end])
        good, broken = _decodes(folder / "cut.mp4")
        if not broken and 20 <= good <= 45:
            return folder, folder / "cut.mp4", good
    pytest.fail("no cut of the test video at a packet's end stops decoding quietly part-way")


def outcome(path, spec: ClipSpec, u: float, extent: VideoExtent | None = None):
    try:
        return frame_index(decode_clip(path, str(path), spec, u, KEEP, extent))
    except SampleError as err:
        return err


def expected_frames(spec: ClipSpec, u: float) -> list[int]:
    """The frame indices the plan asks for at start fraction u (a complete 60-frame file at 25 fps)."""
    if spec.fps is None:
        need = (spec.frames - 1) * spec.stride + 1
        first = int(u * (FRAMES - need + 1))
        return [first + k * spec.stride for k in range(spec.frames)]
    room = FRAMES / RATE - 1 / RATE - (spec.frames - 1) / spec.fps
    first = math.floor(u * room * RATE + 1e-6)
    return [first + math.floor(k * RATE / spec.fps + 1e-6) for k in range(spec.frames)]


SPECS = [ClipSpec(5, 1), ClipSpec(5, 3), ClipSpec(5, fps=12.5)]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_a_training_clip_past_the_cut_is_refused_not_moved_to_the_start(cut_video, spec):
    _, cut, good = cut_video
    used = refused = 0
    for u in np.linspace(0, 0.999, 40):
        want, got = expected_frames(spec, float(u)), outcome(cut, spec, float(u))
        if max(want) < good:  # entirely before the cut: the frames a complete file gives
            assert got == want, (u, got)
            used += 1
        else:
            assert isinstance(got, SampleError), (u, want, got)
            assert got.category == "corrupt" and not got.whole_file and "truncated" in got.problem
            assert f"decoded {good} of the {FRAMES} frames" in got.problem
            refused += 1
    assert used and refused


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_a_remembered_extent_gives_every_draw_the_outcome_decoding_gives(cut_video, spec):
    """What training remembers about a cut video saves decoding and changes no sample (exact resume)."""
    _, cut, _ = cut_video
    learnt = VideoExtent()
    for u in np.random.default_rng(0).random(10).tolist() + [0.999]:
        outcome(cut, spec, u, learnt)
    assert learnt.truncated and learnt.frames is not None
    for u in np.linspace(0, 0.999, 120).tolist():  # every start the plan can pick, the edge of the cut included
        fresh, remembered = outcome(cut, spec, u), outcome(cut, spec, u, learnt)
        if isinstance(fresh, SampleError):
            assert isinstance(remembered, SampleError) and remembered.category == fresh.category
        else:
            assert remembered == fresh


def test_the_cli_refuses_the_file_whose_first_frames_training_and_evaluation_use(cut_video):
    _, cut, good = cut_video
    with pytest.raises(MediaError, match=f"truncated or corrupt: decoded {good} of the {FRAMES} frames"):
        list(iter_video_frames(cut))
    assert len(list(iter_video_frames(cut, max_frames=5))) == 5  # a clip of the good part


def test_evaluation_uses_a_clip_of_the_good_part_and_lists_one_past_the_cut(cut_video):
    folder, _, good = cut_video
    short = EvalData(str(folder), resolve_protocol("video17x256", size=32, frames=9))
    items = {item.name.rsplit("/", 1)[-1]: item for item in short.items()}
    assert isinstance(items["cut.mp4"], Sample) and torch.equal(items["cut.mp4"].x, items["intact.mp4"].x)
    frames = 1 + 4 * (good // 4 + 1)  # the first clip that needs a frame past the cut
    long = EvalData(str(folder), resolve_protocol("video17x256", size=32, frames=frames))
    items = {item.name.rsplit("/", 1)[-1]: item for item in long.items()}
    assert isinstance(items["intact.mp4"], Sample)
    assert isinstance(items["cut.mp4"], Skipped)
    assert items["cut.mp4"].reason.startswith(f"corrupt: truncated or corrupt: decoded {good} of the {FRAMES}")


def test_training_decodes_a_cut_video_to_its_end_once_and_reports_it_once(cut_video, monkeypatch):
    folder, cut, good = cut_video
    passes, draws = [], []
    collect, sample = folders_module._collect, FolderSource.sample

    def counting_collect(container, stream, name, *args, count_all=False):
        passes.append((name, count_all))
        return collect(container, stream, name, *args, count_all=count_all)

    def counting_sample(self, group, position, attempt):
        draws.append(self.index.paths[self._file(group, position, attempt)])
        return sample(self, group, position, attempt)

    monkeypatch.setattr(folders_module, "_collect", counting_collect)
    monkeypatch.setattr(FolderSource, "sample", counting_sample)
    cfg = DataConfig(
        sources=(SourceConfig("video_folder", str(folder)),),
        image_size=32,
        clip_frames=5,
        aspect_buckets=False,
        video_batch_size=2,
        num_workers=0,
    )
    loader = TokenizerDataLoader(cfg)
    it = iter(loader)
    batches = [next(it) for _ in range(60)]
    cut_passes = [c for name, c in passes if name == str(cut)]
    assert cut_passes.count(True) == 1  # decoded to its end once, to find where it stops
    assert len(cut_passes) < draws.count(str(cut))  # clips starting past the cut are refused without decoding
    skipped = [entry for b in batches for entry in b.skipped]
    assert [name for name, _ in skipped] == [str(cut)] and loader.skip_counts == {"corrupt": 1}
    for b in batches:
        for key, x in zip(b.keys, b.pixels):
            idx = frame_index(x)
            assert idx == list(range(idx[0], idx[0] + 5)) and (key != str(cut) or idx[-1] < good)


def test_the_stream_over_a_cut_video_is_the_same_for_any_worker_count_and_across_a_resume(cut_video):
    folder, _, _ = cut_video
    cfg = lambda workers: DataConfig(
        sources=(SourceConfig("video_folder", str(folder)),),
        image_size=32,
        clip_frames=5,
        aspect_buckets=False,
        video_batch_size=2,
        num_workers=workers,
    )
    take = lambda loader, n: [b for _, b in zip(range(n), loader)]
    reference = take(TokenizerDataLoader(cfg(0)), 30)
    first = TokenizerDataLoader(cfg(2))
    head = take(first, 15)
    tail = take(TokenizerDataLoader(cfg(2), start_step=15, state=first.state_dict()), 15)
    assert any(b.skipped for b in reference[:15])  # the cut was met before the resume (clips were refused)
    for a, b in zip(reference, head + tail):
        assert a.keys == b.keys and torch.equal(a.pixels, b.pixels)
