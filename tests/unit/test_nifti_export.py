"""NIfTI copies of registered pairs: the fixed frame's affine, values read back, and the
displacement in world mm (d = A u) with the DISPVECT intent."""
import nibabel as nib
import numpy as np
import pytest

from gsmorph import pairs
from gsmorph.cli import main
from gsmorph.errors import GSMorphError
from gsmorph.nifti_export import INTENT_DISPVECT, volumes, world_displacement, write_volumes

# a rotated, anisotropic affine: array axis 0 -> world y (2 mm), axis 1 -> world -x (1.5 mm), axis 2 -> z (4 mm)
AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -5.0], [0.0, 0.0, 4.0, 3.0], [0, 0, 0, 1]])


def test_world_displacement_by_hand():
    u = np.zeros((2, 3, 4), dtype=np.float32)
    u[0], u[1] = 1.0, 2.0  # one voxel along axis 0, two along axis 1
    d = world_displacement(u, AFFINE)
    assert d.shape == (3, 4, 3)
    np.testing.assert_allclose(d[1, 2], [-3.0, 2.0, 0.0])  # (0*1 - 1.5*2, 2*1 + 0*2, 0)
    u3 = np.zeros((3, 2, 2, 2), dtype=np.float32)
    u3[2] = 0.5
    np.testing.assert_allclose(world_displacement(u3, AFFINE)[0, 0, 0], [0.0, 0.0, 2.0])


def test_slices_go_to_their_index_and_read_back(tmp_path):
    shape = (3, 4, 5)
    k = 2
    disp = np.zeros((k, 2, 3, 4), dtype=np.float32)
    disp[0, 0], disp[1, 1] = 1.0, -1.0
    image = np.arange(k * 12, dtype=np.float32).reshape(k, 3, 4)
    label = np.ones((k, 3, 4), dtype=np.uint8) * np.array([1, 3], dtype=np.uint8)[:, None, None]
    vols = volumes(np.array([1, 4]), disp, image, label, shape, AFFINE)
    paths = write_volumes(tmp_path, "s1", vols, AFFINE)
    assert [p.name for p in paths] == ["s1_moved_image.nii.gz", "s1_moved_label.nii.gz", "s1_disp.nii.gz"]
    read = {p.name.split("_", 1)[1]: nib.load(str(p)) for p in paths}
    for img in read.values():
        np.testing.assert_allclose(img.affine, AFFINE)
    got = np.asarray(read["moved_image.nii.gz"].dataobj)
    np.testing.assert_array_equal(got[:, :, 1], image[0])
    np.testing.assert_array_equal(got[:, :, 4], image[1])
    assert not got[:, :, [0, 2, 3]].any()
    labels = np.asarray(read["moved_label.nii.gz"].dataobj)
    assert labels.dtype == np.uint8 and (labels[:, :, 4] == 3).all() and (labels[:, :, 1] == 1).all()
    field = read["disp.nii.gz"]
    assert field.shape == (3, 4, 5, 1, 3) and field.header.get_intent()[0] == "displacement vector"
    assert int(field.header["intent_code"]) == INTENT_DISPVECT
    values = np.asarray(field.dataobj)[:, :, :, 0, :]
    np.testing.assert_allclose(values[0, 0, 1], [0.0, 2.0, 0.0])   # 1 voxel along axis 0 -> +2 mm world y
    np.testing.assert_allclose(values[0, 0, 4], [1.5, 0.0, 0.0])   # -1 voxel along axis 1 -> +1.5 mm world x
    assert not values[:, :, 0].any()


def test_pairs_that_do_not_fit_the_frame_are_refused():
    disp = np.zeros((1, 2, 3, 4), dtype=np.float32)
    with pytest.raises(GSMorphError, match="subject s: slice 7"):
        volumes(np.array([7]), disp, np.zeros((1, 3, 4)), np.zeros((1, 3, 4)), (3, 4, 5), AFFINE, where="subject s")
    with pytest.raises(GSMorphError, match="3D pairs of shape"):
        volumes(np.array([-1]), np.zeros((1, 3, 3, 4, 6)), np.zeros((1, 3, 4, 6)), np.zeros((1, 3, 4, 6)),
                (3, 4, 5), AFFINE)


def test_register_nifti_writes_the_pairs_on_the_prepared_grid(prepared_acdc, tmp_path):
    out = tmp_path / "pairs"
    assert main(["register", "--method", "demons", "--prepared", str(prepared_acdc), "--split", "test",
                 "--out", str(out), "--workers", "1", "--nifti", "--set", '{"demons": {"iterations": 5}}']) == 0
    for sp in pairs.iter_subjects(out):
        reference = nib.load(str(prepared_acdc / sp.subject / "ED.nii.gz"))
        image = nib.load(str(out / "nifti" / f"{sp.subject}_moved_image.nii.gz"))
        label = nib.load(str(out / "nifti" / f"{sp.subject}_moved_label.nii.gz"))
        field = nib.load(str(out / "nifti" / f"{sp.subject}_disp.nii.gz"))
        for img in (image, label, field):
            np.testing.assert_allclose(img.affine, reference.affine)
        assert image.shape == reference.shape and field.shape == (*reference.shape, 1, 3)
        for k, index in enumerate(sp.slice_index):
            np.testing.assert_allclose(np.asarray(image.dataobj)[:, :, index], sp.moved_image[k])
            np.testing.assert_array_equal(np.asarray(label.dataobj)[:, :, index], sp.moved_label[k])
            expected = np.einsum("wi,ixy->xyw", reference.affine[:3, :2], sp.disp[k])
            np.testing.assert_allclose(np.asarray(field.dataobj)[:, :, index, 0], expected, rtol=1e-5, atol=1e-6)
        assert np.abs(np.asarray(field.dataobj)).max() > 0  # Demons moved something
