"""Poly: the polynomials of byte sizes and arena offsets."""
from kiln.ir.types import Poly


def test_poly_substitute_sets_one_symbol():
    p = Poly({("N",): 64, (): 128, ("N", "N"): 2, ("M", "N"): 3})
    q = p.substitute("N", 8)
    assert set(q.terms) == {(), ("M",)}
    for m in (0, 1, 5):
        assert q.evaluate({"M": m}) == p.evaluate({"N": 8, "M": m})
