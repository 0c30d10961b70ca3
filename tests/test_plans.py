import pytest

from bgkit import ParameterError, plans


def test_linear_steps_stop_short_of_100():
    assert plans.linear(25, 5).percentages == [25, 50, 75]
    assert plans.linear(34, 5).percentages == [34, 68]
    assert plans.linear(10, 60).bake_total_seconds == 9 * 60


def test_canary_is_one_step():
    plan = plans.canary(10, 300)
    assert plan.percentages == [10]
    assert "10%" in plan.describe()


def test_all_at_once_has_no_steps_and_says_so():
    plan = plans.all_at_once()
    assert plan.steps == ()
    assert "no canary analysis" in plan.describe()


def test_explicit_percentages():
    assert plans.from_parameters(
        "5,25,50", step_percent=1, canary_percent=1, bake_seconds=5
    ).percentages == [5, 25, 50]


@pytest.mark.parametrize("text", ["5,5,50", "50,25", "0,10", "10,100", "10,,20", "ten"])
def test_explicit_percentages_must_increase_within_1_to_99(text):
    with pytest.raises(ParameterError, match="^plan: "):
        plans.from_parameters(text, step_percent=1, canary_percent=1, bake_seconds=5)


def test_unknown_plan_is_named():
    with pytest.raises(ParameterError, match="plan: must be linear, canary, all_at_once"):
        plans.from_parameters(
            "blue-green-magic", step_percent=25, canary_percent=10, bake_seconds=5
        )


@pytest.mark.parametrize("percent", [0, 100, 150, -5, True, 2.5])
def test_step_percent_out_of_range(percent):
    with pytest.raises(ParameterError, match="step_percent: must be an integer from 1 to 99"):
        plans.linear(percent, 5)
