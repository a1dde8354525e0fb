"""Plugin loading, isolation of broken plugins, and the plugin-author kit, through real entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import ROOT, Server, start_server
from ollama_core.descriptors import Architecture, RendererSpec
from ollama_core.hookspecs import hookimpl
from ollama_core.plugins import PluginError, build_registries, create_plugin_manager
from ollama_core.testing import PluginProblems, assert_valid_plugin, validate_plugin

pytest_plugins = ["pytester"]

THIRD_PARTY = ROOT / "tests" / "third_party"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin and the broken plugins, pip-installed into a folder of their own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--no-index", "--target", str(target), str(THIRD_PARTY / "example"), str(THIRD_PARTY / "broken"),
        ],
        check=True,
    )
    return target


def ollama(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "ollama_core.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_plugins_command_lists_entry_point_plugins_and_errors(plugin_site: Path) -> None:
    result = ollama(plugin_site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_name = {p["name"]: p for p in report["plugins"]}
    example = by_name["example"]
    assert example["distribution"] == "ollama-example-plugin"
    assert example["version"] == "1.2.3"
    assert example["hooks"] == ["ollama_api_surfaces", "ollama_architectures", "ollama_renderers"]
    assert by_name["ollama_api.native.plugin"]["builtin"] is True
    errors = {e["plugin"]: e for e in report["errors"]}
    assert errors["raises_on_import"]["phase"] == "import"
    assert "this plugin cannot be imported" in errors["raises_on_import"]["error"]
    assert errors["raises_on_import"]["distribution"] == "ollama-broken-plugins"
    assert errors["raises_in_hook"]["phase"] == "hook ollama_renderers"
    assert "renderer registry exploded" in errors["raises_in_hook"]["error"]
    assert errors["misspelled"]["phase"] == "register"
    assert "unknown hook 'ollama_renderer'" in errors["misspelled"]["error"]
    assert "misspelled" not in by_name and "raises_on_import" not in by_name


def test_plugins_command_table(plugin_site: Path) -> None:
    result = ollama(plugin_site, "plugins")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "HOOKS"]
    example = next(line for line in lines if line.startswith("example "))
    assert "ollama-example-plugin 1.2.3" in example and "ollama_renderers" in example
    assert "Errors:" in lines


@pytest.fixture(scope="module")
def plugin_server(plugin_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("plugin-server"), python_path=str(plugin_site))
    yield srv
    srv.stop()


def test_server_with_broken_plugins_serves_everything_else(plugin_server: Server) -> None:
    assert httpx.get(plugin_server.url + "/").text == "Ollama is running"
    assert httpx.get(plugin_server.url + "/api/tags").json() == {"models": []}
    assert httpx.get(plugin_server.url + "/api/example/count").json() == {"models": 0}
    log = plugin_server.log.read_text()
    assert "raises_on_import" in log and "surface factory exploded" in log


def test_registries_record_which_plugin_supplied_each_entry() -> None:
    import ollama_example_plugin_inline as example  # noqa: F401 - defined below via sys.modules

    pm = create_plugin_manager(entry_points=False, plugins=[example])
    registries = build_registries(pm)
    assert registries.renderers["inline-shout"].plugin == "ollama_example_plugin_inline"
    assert registries.renderer_for(None, "inline").name == "inline-shout"
    assert registries.renderer_for("inline-shout", None).name == "inline-shout"


class _HearsThroughProjector:
    @hookimpl
    def ollama_architectures(self) -> list[Architecture]:
        return [Architecture(name="hears", gguf_architectures=("hears",), projector_capabilities=("audio",))]


def test_offers_reads_architectures_and_disabled_plugins_stay_unloaded() -> None:
    import ollama_example_plugin_inline as example

    pm = create_plugin_manager(entry_points=False, plugins=[example], disabled=("ollama_api.openai.plugin",))
    registries = build_registries(pm)
    assert not pm.has_plugin("ollama_api.openai.plugin") and pm.has_plugin("ollama_api.native.plugin")
    assert "openai" not in registries.api_surfaces and "audio" in registries.api_surfaces
    assert not registries.offers("audio")
    registries = build_registries(create_plugin_manager(entry_points=False, plugins=[_HearsThroughProjector()]))
    assert registries.offers("audio") and not registries.offers("vision")


class _Duplicate:
    @hookimpl
    def ollama_renderers(self) -> list[RendererSpec]:
        return [RendererSpec(name="inline-shout", factory=object)]


def test_duplicate_names_are_reported_naming_both() -> None:
    import ollama_example_plugin_inline as example

    pm = create_plugin_manager(entry_points=False, plugins=[example, _Duplicate()])
    registries = build_registries(pm)
    assert registries.renderers["inline-shout"].plugin == "ollama_example_plugin_inline"
    (problem,) = [p for p in pm.errors if p.plugin == "_Duplicate"]
    assert "'ollama_example_plugin_inline'" in problem.error and "'_Duplicate'" in problem.error


class _WrongArgs:
    @hookimpl
    def ollama_renderers(self, model_name: str) -> list[RendererSpec]:
        return []


class _Unmarked:
    def ollama_parsers(self) -> list[object]:
        return []


class _WrongType:
    @hookimpl
    def ollama_architectures(self) -> list[object]:
        return ["gemma"]


class _NewerSpec:
    OLLAMA_PLUGIN_API = 99


def test_validator_flags_every_kind_of_mismatch() -> None:
    assert validate_plugin(_WrongArgs()) == [
        "ollama_renderers: unknown argument(s) model_name; the spec offers none"
    ]
    assert validate_plugin(_Unmarked()) == [
        "ollama_parsers: not decorated with @hookimpl, so it would never be called"
    ]
    assert validate_plugin(_WrongType()) == ["ollama_architectures: item 0 is str, expected Architecture"]
    with pytest.raises(PluginProblems) as info:
        assert_valid_plugin(_WrongArgs())
    assert info.value.problems[0].startswith("ollama_renderers: unknown argument")


def test_plugin_manager_isolates_wrong_arguments_and_newer_specs() -> None:
    pm = create_plugin_manager(entry_points=False, plugins=[_WrongArgs(), _NewerSpec()])
    phases = {(p.plugin, p.phase) for p in pm.errors}
    assert ("_WrongArgs", "register") in phases and ("_NewerSpec", "register") in phases
    with pytest.raises(PluginError):
        create_plugin_manager(entry_points=False, plugins=[_WrongArgs()], strict=True)


def test_author_kit_fixtures_through_pytest11(
    pytester: pytest.Pytester, plugin_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(plugin_site))
    pytester.makepyfile(
        """
        import ollama_example_plugin

        def test_valid(ollama_validate_plugin):
            ollama_validate_plugin(ollama_example_plugin)

        def test_registered(ollama_registries):
            registries = ollama_registries(ollama_example_plugin)
            assert registries.architecture_for("example").renderer == "shout"
            assert "example" in registries.api_surfaces

        class Bad:
            from ollama_core.hookspecs import hookimpl

            @hookimpl
            def ollama_architectures(self, wrong):
                return []

        def test_invalid_fails(ollama_validate_plugin):
            ollama_validate_plugin(Bad())
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*ollama_architectures: unknown argument(s) wrong*"])


def _inline_module() -> None:
    """An in-process plugin module, registered the way tests of a plugin do it."""
    import types

    module = types.ModuleType("ollama_example_plugin_inline")

    @hookimpl
    def ollama_architectures() -> list[Architecture]:
        return [Architecture(name="inline", gguf_architectures=("inline",))]

    @hookimpl
    def ollama_renderers() -> list[RendererSpec]:
        return [RendererSpec(name="inline-shout", factory=object, architectures=("inline",))]

    module.ollama_architectures = ollama_architectures  # type: ignore[attr-defined]
    module.ollama_renderers = ollama_renderers  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module


_inline_module()
