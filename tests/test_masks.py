import torch

from pixelcnn_cli.models.gated.masks import channel_groups, colour_mask, conv_mask, spatial_mask


def test_spatial_masks_a_and_b():
    a, b = spatial_mask(5, "A"), spatial_mask(5, "B")
    expected_rows_above = torch.ones(2, 5)
    assert torch.equal(a[:2], expected_rows_above) and torch.equal(b[:2], expected_rows_above)
    assert a[2].tolist() == [1, 1, 0, 0, 0]  # centre hidden in A
    assert b[2].tolist() == [1, 1, 1, 0, 0]  # centre visible in B
    assert not a[3:].any() and not b[3:].any()


def test_colour_groups_follow_r_then_g_then_b():
    assert colour_mask(3, "A").int().tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert colour_mask(3, "B").int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert channel_groups(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_conv_mask_centre_uses_feature_groups():
    mask = conv_mask(6, 3, (1, 2), (0, 1), "A", 3)  # input: the image, output: 2 features per colour
    assert mask[:, :, 0, 0].all()  # the pixel to the left: every colour
    centre = mask[:, :, 0, 1]
    assert centre.int().tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]]
