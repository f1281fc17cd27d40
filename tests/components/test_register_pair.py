"""`gsmorph register-pair`: a user's own NIfTI pair, registered with a classical method or
a trained run; outputs on the fixed image's affine; bad input is one line naming the file."""
import json

import nibabel as nib
import numpy as np
import pytest

from gsmorph.cli import main

from tiny import tiny

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")

AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [1.5, 0.0, 0.0, -5.0], [0.0, 0.0, 8.0, 3.0], [0, 0, 0, 1]])


def disk(shape, centre, radius):
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2)


@pytest.fixture()
def pair(tmp_path):
    """A bright disc moved by 2 voxels along axis 0 between fixed and moving, 2 slices."""
    shape = (32, 32, 2)
    fixed = np.stack([disk(shape, (15, 16), 6)] * 2, axis=-1).astype(np.float32) * 100
    moving = np.stack([disk(shape, (17, 16), 6)] * 2, axis=-1).astype(np.float32) * 100
    paths = {}
    for name, array in (("fixed", fixed), ("moving", moving), ("label", (moving > 0).astype(np.uint8))):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, AFFINE), str(paths[name]))
    return paths, fixed, moving


def test_initial_gives_the_moving_image_back_on_the_fixed_affine(pair, tmp_path):
    paths, fixed, moving = pair
    out = tmp_path / "out"
    assert main(["register-pair", "--moving", str(paths["moving"]), "--fixed", str(paths["fixed"]),
                 "--moving-label", str(paths["label"]), "--method", "initial", "--out", str(out)]) == 0
    moved = nib.load(str(out / "moved_image.nii.gz"))
    np.testing.assert_allclose(moved.affine, AFFINE)
    np.testing.assert_allclose(np.asarray(moved.dataobj), moving)  # no registration: the original intensities
    field = nib.load(str(out / "disp.nii.gz"))
    assert field.shape == (32, 32, 2, 1, 3) and not np.asarray(field.dataobj).any()
    np.testing.assert_array_equal(np.asarray(nib.load(str(out / "moved_label.nii.gz")).dataobj), moving > 0)
    assert json.loads((out / "registration.json").read_text())["method"] == "initial"


def test_demons_moves_the_disc_onto_the_fixed_one(pair, tmp_path):
    paths, fixed, moving = pair
    out = tmp_path / "out"
    assert main(["register-pair", "--moving", str(paths["moving"]), "--fixed", str(paths["fixed"]),
                 "--moving-label", str(paths["label"]), "--method", "demons", "--out", str(out)]) == 0
    labels = np.asarray(nib.load(str(out / "moved_label.nii.gz")).dataobj) > 0
    target = fixed > 0
    before = 2 * (target & (moving > 0)).sum() / (target.sum() + (moving > 0).sum())
    after = 2 * (target & labels).sum() / (target.sum() + labels.sum())
    assert after > before + 0.05
    # inside the disc the field points from fixed to moving: +2 voxels along axis 0 -> world +y (1.5 mm/voxel)
    world = np.asarray(nib.load(str(out / "disp.nii.gz")).dataobj)[15, 16, 0, 0]
    assert world[1] > 0.5 and abs(world[2]) < 1e-6


def test_a_trained_run_registers_the_pair(pair, prepared_acdc, tmp_path):
    paths, fixed, moving = pair
    run = tmp_path / "run"
    cfg = tiny(max_train_pairs=4, max_val_pairs=2, without=("val_every",))
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method", "gsmorph",
                 "--seed", "0", "--out", str(run), "--set", json.dumps(cfg)]) == 0
    out = tmp_path / "out"
    assert main(["register-pair", "--moving", str(paths["moving"]), "--fixed", str(paths["fixed"]),
                 "--run", str(run), "--out", str(out), "--device", "cpu"]) == 0
    field = nib.load(str(out / "disp.nii.gz"))
    np.testing.assert_allclose(field.affine, AFFINE)
    assert field.shape == (32, 32, 2, 1, 3) and np.isfinite(np.asarray(field.dataobj)).all()
    assert not (out / "moved_label.nii.gz").exists()


def test_bad_inputs_are_one_line_naming_the_file(pair, tmp_path, capsys):
    paths, fixed, moving = pair
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(moving[:16], AFFINE), str(other))
    shifted = tmp_path / "shifted.nii.gz"
    moved_origin = AFFINE.copy()
    moved_origin[0, 3] += 5.0  # the same array 5 mm away: another grid
    nib.save(nib.Nifti1Image(moving, moved_origin), str(shifted))
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    cases = [(other, "shape"), (shifted, "another grid"), (broken, "cannot read NIfTI"),
             (tmp_path / "missing.nii.gz", "not found")]
    for path, reason in cases:
        out = tmp_path / "out"
        rc = main(["register-pair", "--moving", str(path), "--fixed", str(paths["fixed"]), "--method", "initial",
                   "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and err[0].startswith(f"gsmorph register-pair: error: {path}: "), err
        assert reason in err[0] and not out.exists()
    fractional = tmp_path / "fractional.nii.gz"
    nib.save(nib.Nifti1Image(moving / 3.0, AFFINE), str(fractional))
    rc = main(["register-pair", "--moving", str(paths["moving"]), "--fixed", str(paths["fixed"]),
               "--moving-label", str(fractional), "--method", "initial", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{fractional}: the moving labels must hold integer label ids" in err
    rc = main(["register-pair", "--moving", str(paths["moving"]), "--fixed", str(paths["fixed"]),
               "--method", "gsmorph", "--out", str(tmp_path / "o2")])
    assert rc == 1 and "not a non-learned method" in capsys.readouterr().err
