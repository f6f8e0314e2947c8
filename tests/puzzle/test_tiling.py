import pytest
import torch

from puzzlecam.puzzle.tiling import merge, merge_onto, scale_tiles, tile


def test_tile_order_matches_hand_built_tiles():
    # two 1-channel 4x4 images with distinct values
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    tiles = tile(x, grid=2)
    assert tiles.shape == (8, 1, 2, 2)
    expected = []
    for row in range(2):  # tile (0,0) of every image, then (0,1), (1,0), (1,1)
        for col in range(2):
            for image in range(2):
                expected.append(x[image, :, 2 * row : 2 * row + 2, 2 * col : 2 * col + 2])
    torch.testing.assert_close(tiles, torch.stack(expected))
    # tile (0,1) of image 1 holds values 16+2, 16+3, 16+6, 16+7
    assert tiles[2 * 1 + 1, 0].tolist() == [[18.0, 19.0], [22.0, 23.0]]


@pytest.mark.parametrize("grid", [2, 3])
@pytest.mark.parametrize("size", [(6, 6), (7, 5), (9, 13), (1, 4)])
def test_merge_inverts_tile(grid, size):
    x = torch.randn(3, 4, *size)
    before = x.clone()
    tiles = tile(x, grid)
    assert tiles.shape[0] == 3 * grid * grid
    assert tiles.shape[-2:] == (-(-size[0] // grid), -(-size[1] // grid))
    torch.testing.assert_close(merge(tiles, grid, size=size), x, rtol=0, atol=0)
    torch.testing.assert_close(x, before)  # input untouched


def test_odd_sizes_are_padded_not_cropped():
    x = torch.ones(1, 1, 5, 5)
    tiles = tile(x, 2)
    assert tiles.shape == (4, 1, 3, 3)
    # every original pixel survives: 25 ones, the 11 padded cells are zero
    assert tiles.sum().item() == 25
    assert merge(tiles, 2).shape == (1, 1, 6, 6)


def test_merge_rejects_wrong_tile_count():
    with pytest.raises(ValueError, match="cannot come from"):
        merge(torch.zeros(5, 1, 2, 2), 2)


def test_the_package_exports_what_the_readme_documents():
    import puzzlecam.puzzle as puzzle

    assert puzzle.tile is tile and puzzle.merge is merge
    assert all(hasattr(puzzle, name) for name in puzzle.__all__)


def test_merge_onto_keeps_a_matching_grid_and_resizes_a_different_one():
    # four constant 1x1 tile maps: 1, 2, 3, 4 in row-major tile order
    tiles = torch.arange(1.0, 5.0).reshape(4, 1, 1, 1)
    same = merge_onto(tiles, 2, (2, 2))
    assert torch.equal(same, torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    # onto a 4x4 grid: bilinear (align_corners=False) keeps each corner value and blends
    # across the seam at 1/4 and 3/4, e.g. row 0 is 1, 1.25, 1.75, 2
    resized = merge_onto(tiles, 2, (4, 4))
    assert resized.shape == (1, 1, 4, 4)
    assert torch.allclose(resized[0, 0, 0], torch.tensor([1.0, 1.25, 1.75, 2.0]))
    assert torch.allclose(resized[0, 0, :, 0], torch.tensor([1.0, 1.5, 2.5, 3.0]))


def test_scale_tiles_bilinear_hand_computed():
    tiles = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])  # (1, 1, 2, 2)
    assert scale_tiles(tiles, 1.0) is tiles
    up = scale_tiles(tiles, 2.0)
    # half-pixel centres: output rows/columns sample 0, 0.25, 0.75, 1 of the source
    expected = torch.tensor(
        [[0.0, 0.5, 1.5, 2.0], [1.0, 1.5, 2.5, 3.0], [3.0, 3.5, 4.5, 5.0], [4.0, 4.5, 5.5, 6.0]]
    )
    assert torch.allclose(up[0, 0], expected)
    assert scale_tiles(torch.zeros(8, 3, 64, 64), 1.5).shape == (8, 3, 96, 96)
