"""The one colour ramp (orchestrator/colors.py), shared by every plot and the MLflow child runs."""

from orchestrator.colors import STOPS, ramp, ramp_color


def test_the_ramp_runs_dark_to_light_through_its_stops():
    assert ramp_color(0) == STOPS[0] and ramp_color(1) == STOPS[-1] and ramp_color(0.5) == STOPS[4]
    colors = ramp([50, 0, 30, 15, 30])
    assert list(colors) == [0, 15, 30, 50] and colors[0] == STOPS[0] and colors[50] == STOPS[-1]
    # Darker first: the green channel of viridis rises along the ramp.
    greens = [int(colors[b][3:5], 16) for b in (0, 15, 30, 50)]
    assert greens == sorted(greens) and len(set(colors.values())) == 4
    assert ramp([7]) == {7: ramp_color(0.5)}
