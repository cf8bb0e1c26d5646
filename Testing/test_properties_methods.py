"""Property-based tests of the method interface's invariants: the output slab
(core/api.py output_geometry), per-slice shifts (core/stack.py shift_slices) and option
coercion (core/api.py Option.coerce).

Every method writes onto output_geometry's grid and every CLI / Slicer / worker option passes
through Option.coerce, so a drift of the slab by half a slice, or an option value that slips
past its bounds (NaN compares false with everything) would touch every method at once; the
hand-written cases in test_baselines.py and test_worker.py check a few fixed values only.

Generated examples per test (hypothesis ``max_examples``, ``deadline=None``):

* test_output_covers_the_input_slab ...................... 80
* test_invalid_output_requests_raise ..................... 40
* test_integer_shift_and_back_is_exact ................... 40
* test_fractional_shift_and_back_within_interpolation_error  40
* test_bool_strings ...................................... 40
* test_numbers_from_strings .............................. 60
* test_non_numbers_raise_one_line_input_error ............ 60
* test_choices ........................................... 40
* test_bounds ............................................ 80
* test_coerce_is_idempotent .............................. 80

plus the explicit ``@example`` cases (the two inputs that found bugs in Option.coerce: an
integer option given an infinite float raised OverflowError instead of InputError, and NaN passed
the minimum/maximum checks), which run on every test run.
"""

import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from CardiacReconstructionLib.core.api import DEFAULT_SLICE_SPACING_MM, Option, output_geometry
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Geometry, Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.stack import shift_slices

seeds = st.integers(0, 2 ** 32 - 1)


@st.composite
def sax_geometries(draw):
    """A SAX stack grid: random rotation, anisotropic in-plane spacing, thick slices."""
    spacing = (draw(st.floats(0.3, 3.0)), draw(st.floats(0.3, 3.0)), draw(st.floats(1.0, 15.0)))
    direction = Rotation.random(random_state=draw(seeds)).as_matrix()
    origin = draw(st.tuples(*[st.floats(-300.0, 300.0)] * 3))
    shape = (draw(st.integers(1, 30)), draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    return Geometry(shape, make_ijk_to_ras(spacing, origin, direction))


# ---------------------------------------------------------------------------------------------
# output_geometry
# ---------------------------------------------------------------------------------------------

requests = st.one_of(
    st.tuples(st.just("spacing"), st.floats(0.05, 40.0)),
    st.tuples(st.just("factor"), st.floats(1.0, 20.0)),
    st.tuples(st.just("default"), st.none()),
)


@settings(max_examples=80, deadline=None)
@given(g=sax_geometries(), request=requests)
def test_output_covers_the_input_slab(g, request):
    """The output keeps the in-plane grid and direction, covers exactly the input slab (half an
    input slice beyond the first and last slice centres) and its spacing slab / n_out is the
    closest such spacing to the request (within half a slice of rounding)."""
    kind, value = request
    s_in = g.spacing[2]
    if kind == "spacing":
        h, wanted = output_geometry(g, slice_spacing=value), value
    elif kind == "factor":
        h, wanted = output_geometry(g, factor=value), s_in / value
    else:
        h, wanted = output_geometry(g), min(DEFAULT_SLICE_SPACING_MM, s_in)
    n_out, s_out = h.shape[0], h.spacing[2]

    assert h.shape[1:] == g.shape[1:]
    np.testing.assert_allclose(h.ijk_to_ras[:3, :2], g.ijk_to_ras[:3, :2], rtol=0, atol=0)
    np.testing.assert_allclose(h.direction, g.direction, atol=1e-12)

    # the slab, measured along the stack's k axis from the input's first slice centre
    k_dir = g.direction[:, 2]
    offset = h.origin - g.origin
    np.testing.assert_allclose(offset - (offset @ k_dir) * k_dir, 0, atol=1e-9)  # no in-plane move
    first_out = offset @ k_dir
    slab = g.n_slices * s_in
    np.testing.assert_allclose(first_out - s_out / 2, -s_in / 2, atol=1e-9)
    np.testing.assert_allclose(first_out + (n_out - 0.5) * s_out, (g.n_slices - 0.5) * s_in, atol=1e-9)
    np.testing.assert_allclose(n_out * s_out, slab, rtol=1e-12)

    # n_out is the rounded slab / request, so the spacing is within 0.5 / n_out of the request
    if slab / wanted >= 0.5:
        assert abs(n_out - slab / wanted) <= 0.5 + 1e-9
        assert abs(s_out - wanted) <= wanted * 0.5 / n_out + 1e-9
    else:  # a request thicker than twice the slab: one slice over the whole slab
        assert n_out == 1 and math.isclose(s_out, slab)


@settings(max_examples=40, deadline=None)
@given(g=sax_geometries(), bad=st.one_of(
    st.tuples(st.just("spacing"), st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf))),
    st.tuples(st.just("factor"), st.one_of(st.floats(max_value=1.0, exclude_max=True), st.just(math.nan),
                                           st.just(math.inf))),
    st.tuples(st.just("both"), st.tuples(st.floats(0.1, 10.0), st.floats(1.0, 10.0)))))
def test_invalid_output_requests_raise(g, bad):
    """Non-positive or non-finite spacings, factors below 1 (or NaN / infinite) and giving both
    a spacing and a factor are user errors: InputError with a one-line message."""
    kind, value = bad
    with pytest.raises(InputError) as info:
        if kind == "spacing":
            output_geometry(g, slice_spacing=value)
        elif kind == "factor":
            output_geometry(g, factor=value)
        else:
            output_geometry(g, slice_spacing=value[0], factor=value[1])
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# shift_slices
# ---------------------------------------------------------------------------------------------

MAX_SHIFT = 3  # voxels


@st.composite
def shift_cases(draw, integer):
    n = draw(st.integers(1, 5))
    size = (draw(st.integers(2 * MAX_SHIFT + 3, 16)), draw(st.integers(2 * MAX_SHIFT + 3, 16)))
    spacing = (draw(st.floats(0.3, 3.0)), draw(st.floats(0.3, 3.0)), draw(st.floats(1.0, 12.0)))
    if integer:
        px = draw(st.lists(st.tuples(st.integers(-MAX_SHIFT, MAX_SHIFT), st.integers(-MAX_SHIFT, MAX_SHIFT)),
                           min_size=n, max_size=n))
    else:
        f = st.floats(-MAX_SHIFT, MAX_SHIFT)
        px = draw(st.lists(st.tuples(f, f), min_size=n, max_size=n))
    return n, size, np.asarray(spacing), np.asarray(px, float), draw(seeds)


@settings(max_examples=40, deadline=None)
@given(case=shift_cases(integer=True))
def test_integer_shift_and_back_is_exact(case):
    """A whole-voxel shift with order 0 moves labels without changing them (slice k's content
    appears dx/si columns along +i and dy/sj rows along +j), and shifting back restores the
    stack exactly except in the border band the shift pushed out of the field of view."""
    n, (nj, ni), spacing, px, seed = case
    arr = np.random.default_rng(seed).integers(0, 4, size=(n, nj, ni)).astype(np.uint8)
    vol = Volume(arr, make_ijk_to_ras(spacing))
    mm = px * spacing[:2]  # (di, dj) voxels -> (dx, dy) mm
    moved = shift_slices(vol, mm, order=0)
    back = shift_slices(moved, -mm, order=0)
    assert moved.array.dtype == arr.dtype and back.array.dtype == arr.dtype
    m = MAX_SHIFT
    np.testing.assert_array_equal(back.array[:, m:-m, m:-m], arr[:, m:-m, m:-m])
    for k, (di, dj) in enumerate(px.astype(int)):
        np.testing.assert_array_equal(moved.array[k, m:-m, m:-m], arr[k, m - dj:nj - m - dj, m - di:ni - m - di])
    # content that keeps a background frame one voxel wider than the shift comes back whole
    framed = np.zeros_like(arr)
    framed[:, m + 1:-m - 1, m + 1:-m - 1] = arr[:, m + 1:-m - 1, m + 1:-m - 1]
    fvol = vol.with_array(framed)
    np.testing.assert_array_equal(shift_slices(shift_slices(fvol, mm, order=0), -mm, order=0).array, framed)


@settings(max_examples=40, deadline=None)
@given(case=shift_cases(integer=False), sigma=st.floats(2.5, 6.0))
def test_fractional_shift_and_back_within_interpolation_error(case, sigma):
    """A sub-voxel shift and its inverse with linear interpolation restore a smooth image up to
    twice the bilinear interpolation error, (h^2 / 8) (|f_ii| + |f_jj|) per pass for h = 1
    voxel: for a unit Gaussian of width sigma voxels that is 2 * 2 / (8 sigma^2), away from the
    border band that the shift pushed out of view."""
    n, (nj, ni), spacing, px, seed = case
    rng = np.random.default_rng(seed)
    j, i = np.mgrid[0:nj, 0:ni].astype(float)
    ci, cj = rng.uniform(0, ni - 1), rng.uniform(0, nj - 1)
    blob = np.exp(-((i - ci) ** 2 + (j - cj) ** 2) / (2 * sigma ** 2))
    arr = np.repeat(blob[None], n, axis=0) * rng.uniform(0.5, 1.0, size=(n, 1, 1))
    vol = Volume(arr, make_ijk_to_ras(spacing))
    mm = px * spacing[:2]
    back = shift_slices(shift_slices(vol, mm, order=1), -mm, order=1)
    m = MAX_SHIFT + 1
    bound = 2 * 2 / (8 * sigma ** 2)
    err = np.abs(back.array - arr)[:, m:-m, m:-m]
    assume(err.size)
    assert err.max() <= bound + 1e-9, (err.max(), bound)


# ---------------------------------------------------------------------------------------------
# Option.coerce
# ---------------------------------------------------------------------------------------------

def _respell(draw, word):
    """``word`` in random letter case with random surrounding whitespace."""
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)
    pad = st.sampled_from(["", " ", "  ", "\t", "\n"])
    return draw(pad) + cased + draw(pad)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_bool_strings(data):
    """The widget and the CLI write booleans as text: 1/true/yes/on (any case, padded) are True,
    0/false/no/off are False; real booleans pass through."""
    opt = Option("flag", bool, False, "")
    word = data.draw(st.sampled_from(["1", "true", "yes", "on", "0", "false", "no", "off"]))
    assert opt.coerce(_respell(data.draw, word)) is (word in ("1", "true", "yes", "on"))
    b = data.draw(st.booleans())
    assert opt.coerce(b) is b


@settings(max_examples=60, deadline=None)
@given(i=st.integers(-10 ** 6, 10 ** 6), x=st.floats(allow_nan=False, allow_infinity=False),
       pad=st.sampled_from(["", " ", "\t"]))
def test_numbers_from_strings(i, x, pad):
    """Integers and floats typed as text come back as the same numbers and types; an integer
    is a valid float."""
    assert Option("n", int, 0, "").coerce(f"{pad}{i}{pad}") == i
    assert type(Option("n", int, 0, "").coerce(str(i))) is int
    assert Option("x", float, 0.0, "").coerce(f"{pad}{x!r}{pad}") == x
    y = Option("x", float, 0.0, "").coerce(str(i))
    assert type(y) is float and y == i


@settings(max_examples=60, deadline=None)
@example(typ=int, value=math.inf)  # once an OverflowError out of int(inf)
@given(typ=st.sampled_from([int, float]),
       value=st.one_of(st.text().filter(lambda s: not _is_number(s)), st.none(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                       st.just(math.inf), st.just(-math.inf), st.just(math.nan)))
def test_non_numbers_raise_one_line_input_error(typ, value):
    """Text that is no number, None, containers, and values the type cannot hold (an integer
    option given an infinite or NaN float) are user errors: InputError naming the option, in
    one line (never a TypeError, ValueError or OverflowError from the conversion)."""
    if typ is float and isinstance(value, float):
        opt = Option("opt", float, 0.0, "", minimum=-1e9, maximum=1e9)  # inf / nan: out of the bounds
    else:
        opt = Option("opt", typ, 0, "")
    with pytest.raises(InputError) as info:
        opt.coerce(value)
    assert "'opt'" in str(info.value) and "\n" not in str(info.value)


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


@settings(max_examples=40, deadline=None)
@given(choices=st.lists(st.integers(-5, 5), min_size=1, max_size=4, unique=True), value=st.integers(-8, 8),
       as_text=st.booleans())
def test_choices(choices, value, as_text):
    """A value (or its text) is accepted exactly when it is one of the choices."""
    opt = Option("c", int, choices[0], "", choices=tuple(choices))
    given_value = str(value) if as_text else value
    if value in choices:
        assert opt.coerce(given_value) == value
    else:
        with pytest.raises(InputError, match="must be one of") as info:
            opt.coerce(given_value)
        assert "\n" not in str(info.value)
    words = Option("w", str, "a", "", choices=("a", "b"))
    assert words.coerce("b") == "b"
    with pytest.raises(InputError):
        words.coerce("B")


bounds = st.tuples(st.one_of(st.none(), st.floats(-100.0, 100.0)), st.one_of(st.none(), st.floats(-100.0, 100.0)))


@settings(max_examples=80, deadline=None)
@given(typ=st.sampled_from([int, float]), lo_hi=bounds,
       value=st.one_of(st.floats(-200.0, 200.0), st.integers(-200, 200), st.just(math.nan), st.just(math.inf),
                       st.just(-math.inf)),
       as_text=st.booleans())
@example(typ=float, lo_hi=(None, 0.0), value=math.nan, as_text=False)  # NaN once slipped past the bounds
@example(typ=float, lo_hi=(0.1, 100.0), value=math.nan, as_text=True)
def test_bounds(typ, lo_hi, value, as_text):
    """A number is accepted exactly when it lies in [minimum, maximum] (an open end where a bound
    is None) after conversion to the option's type; NaN lies in no bounded range."""
    lo, hi = lo_hi
    assume(lo is None or hi is None or lo <= hi)
    opt = Option("b", typ, 0, "", minimum=lo, maximum=hi)
    given_value = (repr(value) if isinstance(value, float) else str(value)) if as_text else value
    try:
        converted = typ(given_value)  # the conversion itself is Python's; the bounds are the point
    except (ValueError, OverflowError):  # e.g. int("2.5"), int(nan): a type error
        with pytest.raises(InputError, match="expects"):
            opt.coerce(given_value)
        return
    if math.isnan(converted):
        inside = lo is None and hi is None
    else:
        inside = (lo is None or converted >= lo) and (hi is None or converted <= hi)
    if inside:
        out = opt.coerce(given_value)
        assert out == converted or (math.isnan(out) and math.isnan(converted))
    else:
        with pytest.raises(InputError, match="must lie in") as info:
            opt.coerce(given_value)
        assert "\n" not in str(info.value)


options = st.one_of(
    st.builds(lambda: Option("f", bool, False, "")),
    st.builds(lambda lo: Option("i", int, 0, "", minimum=lo), st.one_of(st.none(), st.integers(-10, 10))),
    st.builds(lambda hi: Option("x", float, 0.0, "", maximum=hi), st.one_of(st.none(), st.floats(-10.0, 10.0))),
    st.builds(lambda: Option("s", str, "", "")),
    st.builds(lambda: Option("c", int, 1, "", choices=(1, 2, 3))),
)


@settings(max_examples=80, deadline=None)
@given(opt=options, value=st.one_of(st.booleans(), st.integers(-20, 20), st.floats(-20.0, 20.0), st.text(max_size=6),
                                    st.sampled_from(["1", "2", "3", "true", " off ", "2.5", "-3", "1e1"])))
def test_coerce_is_idempotent(opt, value):
    """Coercing an already coerced value changes nothing (the worker re-coerces the values it
    stored), and the result has the option's type."""
    try:
        once = opt.coerce(value)
    except InputError:
        return
    assert type(once) is opt.type
    twice = opt.coerce(once)
    assert type(twice) is opt.type
    assert twice == once or (isinstance(once, float) and math.isnan(once) and math.isnan(twice))
