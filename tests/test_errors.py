import pickle

from puzzlecam.errors import DataError, short_list


def test_short_list_names_at_most_the_limit_then_the_count():
    assert short_list([]) == ""
    assert short_list(["a", "b"]) == "a, b"
    assert short_list(list("abcd"), limit=3) == "a, b, c, ... (4 in all)"
    assert short_list(list("abc"), limit=3) == "a, b, c"


def test_data_error_survives_a_worker_round_trip():
    error = DataError("images/x.jpg", "is truncated; re-export it")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "images/x.jpg: is truncated; re-export it" and copy.path == error.path
