"""The billed-units model ``make bench`` uses (AWS's item sizing rules)."""

from __future__ import annotations

from benchmarks.billing import item_size, number_size, read_units, value_size, write_units


def test_item_sizes_follow_aws_rules() -> None:
    # Strings: name + UTF-8 bytes; binary: raw bytes; bool/null: 1 byte.
    assert item_size({"pk": {"S": "slack#T1#U1"}, "b": {"B": b"\x00" * 10}}) == 2 + 11 + 1 + 10
    assert item_size({"é": {"S": "é"}}) == 4
    assert item_size({"ok": {"BOOL": True}, "n": {"NULL": True}}) == 3 + 2
    # Numbers: 1 byte per two significant digits, plus 1; zeros trimmed.
    assert number_size("7") == 2 and number_size("1800000000") == 2 and number_size("123") == 3
    assert number_size("-12.5") == 3 and number_size("0") == 2
    # Lists and maps: 3 bytes, plus 1 per element, plus the elements (a map's keys too).
    assert value_size({"L": []}) == 3
    assert value_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (1 + 2) + (1 + 2)
    assert value_size({"M": {"k": {"S": "v"}}}) == 3 + 1 + 1 + 1
    assert item_size(None) == 0


def test_units_round_up_per_item() -> None:
    assert write_units(0, 200) == 1 and write_units(1024, 0) == 1 and write_units(1025, 10) == 2
    assert write_units(3000, 100) == 3  # the larger of the item before and after
    assert write_units(200, 200, transactional=True) == 2
    assert write_units(0, 0) == 1  # a write of nothing still costs one unit
    assert read_units(0, consistent=True) == 1  # a missing item is one read
    assert read_units(4097, consistent=True) == 2 and read_units(100, consistent=False) == 0.5
