"""The context vector a fused image + metadata network takes (edge_runtime.fusion)."""

import numpy as np
import pytest

from edge_runtime.clinical import Context
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.fusion import ContextEncoding

ENC = ContextEncoding.fit([Context(40, "male", "back"), Context(None, "female", "face"),
                           Context(70, "unknown", "unknown"), Context(12, None, "back")])


def test_vocabularies_leave_unknown_to_its_own_slot():
    assert ENC.sexes == ("female", "male") and ENC.sites == ("back", "face")
    assert ENC.dim == len(ENC.layout()) == 2 + 3 + 3
    assert ENC.layout()[-1] == "site=unknown"


def test_each_field_and_its_absence():
    v = ENC.encode(Context(55, "female", "face"))
    assert v.dtype == np.float32 and v.shape == (ENC.dim,)
    assert v[0] == pytest.approx(0.55) and v[1] == 0
    assert v[ENC.slots()["sex"]].tolist() == [1, 0, 0]
    assert v[ENC.slots()["site"]].tolist() == [0, 1, 0]
    none = ENC.encode(None)
    assert none[:2].tolist() == [0, 1]
    assert none[ENC.slots()["sex"]].tolist() == [0, 0, 1] and none[ENC.slots()["site"]].tolist() == [0, 0, 1]
    # "unknown" is the same as leaving the field out; each field is independent of the others
    assert np.array_equal(ENC.encode(Context(55, "unknown", "face"))[ENC.slots()["sex"]], none[ENC.slots()["sex"]])
    assert np.array_equal(ENC.encode(Context(None, "female", "face"))[2:], v[2:])


def test_bad_values_are_one_line_errors_naming_the_valid_ones():
    with pytest.raises(EdgeRuntimeError, match=r"body site 'elbow'.*\['back', 'face'\]") as e:
        ENC.encode(Context(site="elbow"))
    assert "\n" not in str(e.value)
    with pytest.raises(EdgeRuntimeError, match="sex 'x'"):
        ENC.encode(Context(sex="x"))
    for age in (-1, 130, float("nan")):
        with pytest.raises(EdgeRuntimeError, match="not an age in years"):
            ENC.encode(Context(age=age))


def test_field_dropout_and_round_trip():
    rows = ENC.encode_all([Context(40, "male", "back")] * 400)
    rng = np.random.default_rng(0)
    assert np.array_equal(ENC.drop_fields(rows, 0.0, rng), rows)
    assert np.array_equal(ENC.drop_fields(rows, 1.0, rng), np.repeat(ENC.encode(None)[None], 400, 0))
    half = ENC.drop_fields(rows, 0.5, rng)
    age_dropped = half[:, 1] == 1
    assert 0.35 < age_dropped.mean() < 0.65
    assert np.all(half[age_dropped, 0] == 0)
    assert ContextEncoding.from_dict(ENC.to_dict()) == ENC
    with pytest.raises(EdgeRuntimeError, match="upgrade"):
        ContextEncoding.from_dict({**ENC.to_dict(), "age_scale": 10})


def test_fused_network_adds_a_context_block_that_leaves_the_cam_alone():
    import edgeskin._compat  # noqa: F401
    import torch

    from edgeskin.models.factory import build_model

    torch.manual_seed(0)
    model = build_model("edgeskin_cnn_s", 3, input_size=(24, 32), context=ENC.to_dict()).eval()
    x = torch.randn(2, 3, 24, 32)
    ctx = torch.from_numpy(ENC.encode_all([Context(80, "male", "face"), Context(20, "female", "back")]))
    missing = torch.from_numpy(ENC.encode_all([Context(), Context()]))
    with torch.no_grad():
        torch.nn.init.normal_(model.context.fc.weight)  # make the context matter
        fused, none, default = model(x, ctx), model(x, missing), model(x)
        model.cam_output = True
        (_, cam_ctx), (_, cam_none) = model(x, ctx), model(x)
    assert not torch.allclose(fused, none)  # the context moves the logits
    assert torch.allclose(none, default)  # no context = every field missing
    assert torch.equal(cam_ctx, cam_none) and cam_ctx.shape[:2] == (2, 3)
    # the image block alone is what a plain network of the same weights gives
    plain = build_model("edgeskin_cnn_s", 3, input_size=(24, 32)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("context.")})
    with torch.no_grad():
        assert torch.allclose(fused - model.context(ctx, 2), plain(x), atol=1e-5)
