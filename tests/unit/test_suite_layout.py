"""The three folders of tests (tests/suite_layout.py): every test file lives in one of them
under a name no other test file has, the rule names the folder a misplaced test belongs
in, and the collected tests carry the marks their folder gives them."""

from __future__ import annotations

from suite_layout import LAYERS, SLOW_FIRST, TESTS, is_integration, layer_of, misplaced


def test_every_test_file_lives_in_a_folder_under_a_unique_name():
    files = sorted(TESTS.rglob("test_*.py"))
    assert [f for f in files if layer_of(f) is None] == []
    assert {layer_of(f) for f in files} == set(LAYERS)
    names = [f.name for f in files]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []  # pytest imports each by its bare name
    assert set(SLOW_FIRST) <= set(names)  # the order names files that exist


def test_the_rule_names_the_folder_a_test_belongs_in():
    unit, integration, docs = (TESTS / layer / "test_x.py" for layer in LAYERS)
    assert misplaced(unit, reads_real_data=True, marked_integration=False) == (
        "a test that reads the real data (data_dir) lives in tests/integration/, not tests/unit/ "
        "(tests/suite_layout.py)")
    assert "a test that is marked integration lives in tests/integration/" in misplaced(unit, False, True)
    assert "lives in tests/unit/, tests/integration/ or tests/docs/" in misplaced(TESTS / "test_x.py", False, False)
    assert misplaced(unit, False, False) is None
    assert misplaced(TESTS.parent / "elsewhere" / "test_x.py", True, True) is None  # not this suite's
    assert all(misplaced(path, True, True) is None for path in (integration, docs))
    assert is_integration(integration, False) and is_integration(docs, True) and is_integration(unit, True)
    assert not is_integration(docs, False) and not is_integration(unit, False)


def test_the_collected_tests_carry_the_marks_of_their_folder(request):
    """Every test this run collected (the whole suite under scripts/test.sh, each worker
    collects all of it): those in tests/integration/ and those using ``data_dir`` are marked
    integration, and none in tests/unit/ is."""
    items = request.session.items
    assert request.node in items
    for item in items:
        marked = item.get_closest_marker("integration") is not None
        real = "data_dir" in getattr(item, "fixturenames", ())
        layer = layer_of(item.path)
        assert layer in LAYERS, item.nodeid
        if layer == "integration" or real:
            assert marked, item.nodeid
        if layer == "unit":
            assert not marked and not real, item.nodeid
