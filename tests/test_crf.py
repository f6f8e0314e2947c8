"""The CRF is an optional extra: without pydensecrf2 a CRF step is skipped, said once."""

from puzzlecam import crf


def test_crf_iterations_without_pydensecrf2_are_zero_and_said(monkeypatch):
    monkeypatch.setattr(crf, "crf_available", lambda: False)
    said = []
    assert crf.crf_iterations(10, "pseudo-labels", said.append) == 0
    assert said == [
        "pseudo-labels: pydensecrf2 is not installed, CRF skipped (pip install 'puzzlecam[crf]')"
    ]
    assert crf.crf_iterations(0, "pseudo-labels", said.append) == 0 and len(said) == 1


def test_crf_iterations_with_pydensecrf2_are_kept(monkeypatch):
    monkeypatch.setattr(crf, "crf_available", lambda: True)
    assert crf.crf_iterations(10, "predict", print) == 10
