"""The committed sample is what its generator writes today: a change to the generator's scenarios or to its
independent reference (the second implementation the sample tests compare the scan with) that was not followed by
`python sample_data/generate.py` fails here, instead of leaving the tests to judge the scan against stale answers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def generated():
    spec = importlib.util.spec_from_file_location("sample_generate", SAMPLE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    world = module.build()
    expected = module.reference(world.tables, module.DEPLOYMENTS, world.redis)
    module.check(world, expected)
    return {
        "config.yaml": module.config_text(),
        "litellm_tables.json": module.dump_tables(world.tables),
        "redis.json": json.dumps(world.redis, indent=2, sort_keys=True) + "\n",
        "expected.json": json.dumps(expected, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
        "README.md": module.readme(world, expected),
    }


@pytest.mark.parametrize("name", ["config.yaml", "litellm_tables.json", "redis.json", "expected.json", "README.md"])
def test_the_committed_sample_is_what_the_generator_writes(generated, name):
    assert (SAMPLE / name).read_text() == generated[name], f"sample_data/{name} is stale: run python sample_data/generate.py"
