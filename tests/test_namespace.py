"""The installed packages live under the one ``meio`` namespace, so a research repository's own
``envs``, ``configs`` or ``baselines`` package neither shadows them nor is shadowed by them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# Run from a folder that holds the user's own packages, with the names the repository's folders have.
_USER_CODE = textwrap.dedent("""
    import importlib.util
    import gymnasium as gym

    import envs, configs, baselines                 # the user's packages, found first on sys.path
    assert (envs.OWNER, configs.OWNER, baselines.OWNER) == ("user", "user", "user")
    assert importlib.util.find_spec("agents") is None, "meio installs no top-level 'agents'"

    # Gymnasium imports the module named before the colon, then makes the environment.
    env = gym.make("meio:meio/MultiEchelon-v0", scenario="ex61")
    obs, _ = env.reset(seed=0)
    import meio.envs
    assert meio.envs.__name__ == "meio.envs" and not hasattr(meio.envs, "OWNER")
    env2 = gym.make("meio/MultiEchelon-v0", scenario="ex61")     # registered by that import
    obs2, _ = env2.reset(seed=0)
    assert (obs == obs2).all()
    from meio.configs import __name__ as cfg
    from meio.envs.scenario import list_scenarios
    assert "ex61" in list_scenarios()
    assert envs.OWNER == "user"                      # still the user's after meio loaded
    print("ok", cfg)
""")


def test_meio_beside_a_users_own_envs_configs_and_baselines(tmp_path: Path) -> None:
    for name in ("envs", "configs", "baselines"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text('OWNER = "user"\n')
    (tmp_path / "probe.py").write_text(_USER_CODE)
    done = subprocess.run([sys.executable, "probe.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "meio.configs"]


def test_the_cli_runs_from_a_folder_with_its_own_envs(tmp_path: Path) -> None:
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "__init__.py").write_text("raise ImportError('the user package was imported')\n")
    meio = Path(sys.executable).with_name("meio")
    done = subprocess.run([str(meio), "validate", "ex61"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ex61" in done.stdout
