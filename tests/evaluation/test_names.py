"""What the report calls things (names.py): our curves, the codecs' labels, the colour spaces."""

from rtaic.evaluation import names


def test_our_curves_and_their_labels():
    assert names.curve() == "learned" and names.curve("gan") == "learned_gan"
    assert (names.RDOQ_CURVE, names.TRUNCATED_CURVE) == ("learned_rdoq", "learned_truncated")
    assert names.is_ours("learned") and names.is_ours("learned_ycbcr")
    assert not names.is_ours("learnedx") and not names.is_ours("jpeg420")
    assert names.label("learned") == "Ours (rtaic)"
    assert names.label("learned_ycbcr") == "Ours (rtaic, YCbCr)"
    assert names.label("learned_gan") == "Ours (rtaic, GAN)"
    assert names.label("learned_rdoq") == "Ours (rtaic, RDOQ)"
    assert names.label("learned_truncated") == "Ours (rtaic, truncated)"
    assert names.label("learned_ycbcr_rdoq") == "Ours (rtaic, YCbCr, RDOQ)"
    assert names.label("learned_ycbcr_plain") == "Ours (rtaic, YCbCr, plain)"
    assert names.RDOQ_CURVES == {"learned": "learned_rdoq", "learned_ycbcr": "learned_ycbcr_rdoq"}
    assert names.label("jpeg420") == "JPEG 4:2:0" and names.label("unknown") == "unknown"


def test_colour_spaces_are_named_once():
    assert names.SPACES == ("rgb", "ycbcr")
    assert [names.space_name(s) for s in names.SPACES] == ["RGB", "YCbCr"]
    # the ratio is computed from the metric's weights (rtaic.color.CHANNEL_WEIGHTS)
    assert names.space_label("rgb") == "RGB, channels 1:1:1"
    assert names.space_label("ycbcr") == "YCbCr, channels 6:1:1"
