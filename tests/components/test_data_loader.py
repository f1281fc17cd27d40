"""The prepared-folder loader: 2D and 3D pairs, dropping slices, batching."""
from __future__ import annotations

import numpy as np
import pytest

from gsmorph.data.labels import LV, MYO, RV
from gsmorph.data.loader import load_subject, pairs_2d, pairs_3d, read_subjects, stack
from gsmorph.errors import GSMorphError


def test_2d_pairs_are_slices_of_the_volumes(prepared_acdc):
    table = read_subjects(prepared_acdc)
    test = table[table["split"] == "test"]
    pairs = pairs_2d(prepared_acdc, "test")
    assert len(pairs) == test["n_slices"].sum()
    first = pairs[0]
    subj = load_subject(prepared_acdc, first.subject)
    assert first.subject == test["subject"].iloc[0] and first.slice_index == 0
    np.testing.assert_array_equal(first.moving, subj.ES[:, :, 0])
    np.testing.assert_array_equal(first.fixed, subj.ED[:, :, 0])
    np.testing.assert_array_equal(first.moving_label, subj.ES_gt[:, :, 0])
    np.testing.assert_array_equal(first.true_disp, subj.true_disp[:2, :, :, 0])
    assert first.moving.dtype == np.float32 and first.moving_label.dtype == np.uint8
    assert first.spacing.dtype == np.float64 and first.spacing.shape == (2,)
    assert [p.slice_index for p in pairs if p.subject == first.subject] == list(range(subj.ED.shape[2]))


def test_reversed_direction_has_no_true_disp(prepared_mnm):
    pairs = pairs_2d(prepared_mnm, "val", moving="ED", fixed="ES")
    subj = load_subject(prepared_mnm, pairs[0].subject)
    np.testing.assert_array_equal(pairs[0].moving, subj.ED[:, :, 0])
    assert all(p.true_disp is None for p in pairs)
    with pytest.raises(GSMorphError, match="moving"):
        pairs_2d(prepared_mnm, "val", moving="ED1")
    with pytest.raises(GSMorphError, match="split"):
        pairs_2d(prepared_mnm, "validation")


def test_drop_missing_keeps_only_slices_with_all_structures(prepared_acdc):
    every = pairs_2d(prepared_acdc, "train")
    kept = pairs_2d(prepared_acdc, "train", drop_missing=True)
    assert 0 < len(kept) < len(every)  # apical slices have no RV
    for p in kept:
        for lab in (p.moving_label, p.fixed_label):
            assert {LV, MYO, RV} <= set(np.unique(lab))
    dropped = {(p.subject, p.slice_index) for p in every} - {(p.subject, p.slice_index) for p in kept}
    for p in every:
        if (p.subject, p.slice_index) in dropped:
            assert not ({LV, MYO, RV} <= set(np.unique(p.moving_label)) & set(np.unique(p.fixed_label)))


def test_3d_pairs_and_stack(prepared_mnm):
    pairs = pairs_3d(prepared_mnm, "train")
    table = read_subjects(prepared_mnm)
    assert [p.subject for p in pairs] == table.loc[table["split"] == "train", "subject"].tolist()
    assert all(p.slice_index == -1 and p.spacing.shape == (3,) for p in pairs)
    assert pairs[0].true_disp.shape == (3,) + pairs[0].moving.shape
    with pytest.raises(GSMorphError, match="different shapes"):
        stack(pairs)  # subjects have different numbers of slices
    batch = stack(pairs_2d(prepared_mnm, "train"))
    n = len(pairs_2d(prepared_mnm, "train"))
    assert batch["moving"].shape == (n, 64, 64) and batch["fixed_label"].dtype == np.uint8
    assert batch["spacing"].shape == (n, 2) and batch["true_disp"].shape == (n, 2, 64, 64)
    with pytest.raises(GSMorphError):
        stack([])


def test_loader_has_no_torch_dependency():
    import subprocess
    import sys

    code = "import sys, gsmorph.data.loader, gsmorph.data.prepare; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_prepared_folder(tmp_path):
    with pytest.raises(GSMorphError, match="subjects.csv"):
        read_subjects(tmp_path)
    with pytest.raises(GSMorphError, match="subjects.csv"):  # the slice count to check against
        load_subject(tmp_path, "nobody")
    with pytest.raises(GSMorphError, match="ED.nii.gz"):
        load_subject(tmp_path, "nobody", n_slices=3)


def test_pairs_by_mode_and_dataset_name(prepared_acdc):
    from gsmorph.data import loader
    from gsmorph.errors import GSMorphError

    two = loader.pairs(prepared_acdc, "test", mode="2d")
    three = loader.pairs(prepared_acdc, "test", mode="3d")
    assert len(two) == len(loader.pairs_2d(prepared_acdc, "test")) > len(three) > 0
    assert {p.slice_index for p in three} == {-1}
    with pytest.raises(GSMorphError, match="config key 'mode': unknown '4d'"):
        loader.pairs(prepared_acdc, "test", mode="4d")
    assert loader.dataset_name(prepared_acdc) == "acdc"


def test_corrupt_true_disp_is_named(prepared_acdc, tmp_path):
    import shutil

    copy = tmp_path / "prepared"
    shutil.copytree(prepared_acdc, copy)
    subject = read_subjects(copy)["subject"].iloc[0]
    (copy / subject / "true_disp.nii.gz").write_bytes(b"corrupt")
    with pytest.raises(GSMorphError, match=f"{subject}/true_disp.nii.gz: cannot read NIfTI"):
        load_subject(copy, subject)
