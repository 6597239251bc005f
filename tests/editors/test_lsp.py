"""End to end: a real LSP client (pytest-lsp) drives the `sprsc lsp` binary over stdio.

One test per capability. The binary is $SPRSC_BIN (default: target/debug/sprsc). Run from the
repository root: `pytest tests/editors`.
"""

import asyncio
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import time

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPRSC = os.environ.get("SPRSC_BIN", str(ROOT / "target" / "debug" / "sprsc"))
PUBLISH = "textDocument/publishDiagnostics"


@pytest.fixture
def workspace(tmp_path):
    """A folder with a few recipes; the server's workspace root."""
    shutil.copy(ROOT / "recipes" / "quickstart.sprs", tmp_path / "quickstart.sprs")
    (tmp_path / "common.sprs").write_text(
        "// Shared parts.\n"
        "kernel firm(w; tau) = select(abs(w) > tau, w, 0)\n\n"
        "recipe base {\n"
        "  seed 0\n"
        "  data synthetic_digits(train: 600, test: 100)\n"
        "  model lenet300_100\n"
        "  sparsity {\n"
        "    target 90%\n"
        "  }\n"
        "  train {\n"
        "    epochs 2\n"
        "  }\n"
        "}\n"
    )
    (tmp_path / "main.sprs").write_text(
        'use "common.sprs"\n\n'
        "recipe child extends base {\n"
        "  sparsity {\n"
        '    layer "fc1" 95%\n'
        "    update soft_threshold(kernel: firm)\n"
        "  }\n"
        "}\n\n"
        "sweep grid {\n"
        "  recipes [base, child]\n"
        "  vary sparsity.target [90%, 95%]\n"
        "}\n"
    )
    return tmp_path


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[SPRSC, "lsp"]))
async def client(lsp_client: LanguageClient, workspace):
    params = t.InitializeParams(
        capabilities=t.ClientCapabilities(),
        workspace_folders=[t.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
    )
    result = await lsp_client.initialize_session(params)
    assert result.capabilities.position_encoding in (None, t.PositionEncodingKind.Utf16)
    yield
    await lsp_client.shutdown_session()


async def open_doc(client, path, text=None):
    path = pathlib.Path(path)
    text = path.read_text() if text is None else text
    client.text_document_did_open(
        t.DidOpenTextDocumentParams(t.TextDocumentItem(uri=path.as_uri(), language_id="sprs", version=1, text=text))
    )
    await wait_published(client, path.as_uri(), 1)
    return path.as_uri()


async def wait_published(client, uri, version):
    """Waits for the diagnostics of `uri` at `version` or later (the server publishes the
    changed document first, then the documents that may use it)."""
    while True:
        p = await asyncio.wait_for(client.wait_for_notification(PUBLISH), 30)
        if p.uri == uri and (p.version is None or p.version >= version):
            return p.diagnostics


async def settle(client, seconds=0.5):
    """Lets every pending notification arrive."""
    try:
        while True:
            await asyncio.wait_for(client.wait_for_notification(PUBLISH), seconds)
    except asyncio.TimeoutError:
        pass


async def change(client, uri, version, text):
    client.text_document_did_change(
        t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def pos_of(text, needle, delta=0):
    """The LSP position (UTF-16 columns) of `needle` in `text`, plus `delta` characters."""
    i = text.index(needle) + delta
    line = text.count("\n", 0, i)
    col_text = text[text.rfind("\n", 0, i) + 1 : i]
    return t.Position(line=line, character=len(col_text.encode("utf-16-le")) // 2)


def hover_text(h):
    assert h is not None
    return h.contents.value if hasattr(h.contents, "value") else str(h.contents)


def labels(items):
    items = items.items if hasattr(items, "items") else items
    return {i.label for i in items}


# ---------------------------------------------------------------- diagnostics


async def test_diagnostics_match_sprsc_check(client: LanguageClient):
    src = ROOT / "tests" / "ui" / "many_errors_sorted.sprs"
    uri = await open_doc(client, src)
    got = client.diagnostics[uri]
    out = subprocess.run([SPRSC, "check", str(src), "--format", "json"], capture_output=True, text=True)
    want = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(want) >= 3 and len(got) == len(want)
    for g, w in zip(got, want):
        assert g.code == w["code"]
        assert g.message.split("\n")[0] == w["message"]
        assert g.severity == (t.DiagnosticSeverity.Error if w["severity"] == "error" else t.DiagnosticSeverity.Warning)
        assert (g.range.start.line + 1, g.range.start.character + 1) == (w["line"], w["column"])
        assert (g.range.end.line + 1, g.range.end.character + 1) == (w["end_line"], w["end_column"])
        if w.get("help"):
            assert f"help: {w['help']}" in g.message
        assert g.code_description.href.endswith(f"/explain/{w['code']}.md")
        assert g.source == "sprsc"
        assert any(r.message == w["label"] for r in g.related_information or [])


async def test_secondary_labels_are_related_information(client: LanguageClient):
    src = ROOT / "tests" / "ui" / "duplicate_recipe.sprs"
    uri = await open_doc(client, src)
    d = [d for d in client.diagnostics[uri] if d.code == "E0108"][0]
    msgs = [r.message for r in d.related_information]
    assert "first defined here" in msgs


async def test_save_republishes(client: LanguageClient, workspace):
    uri = await open_doc(client, workspace / "quickstart.sprs")
    assert len(client.diagnostics[uri]) == 0
    client.text_document_did_save(
        t.DidSaveTextDocumentParams(text_document=t.TextDocumentIdentifier(uri=uri), text="recipe x {\n  sed 0\n}\n")
    )
    diags = await wait_published(client, uri, 1)
    assert {d.code for d in diags} >= {"E0101", "E0104"}


async def test_change_in_a_used_file_republishes_its_users(client: LanguageClient, workspace):
    main = await open_doc(client, workspace / "main.sprs")
    assert len(client.diagnostics[main]) == 0
    common_path = workspace / "common.sprs"
    common = await open_doc(client, common_path)
    broken = common_path.read_text().replace("recipe base", "recipe basis")
    await change(client, common, 2, broken)
    await settle(client)
    codes = {d.code for d in client.diagnostics[main]}
    assert codes, "main.sprs should report that `base` is gone"
    assert any("base" in d.message for d in client.diagnostics[main])


async def test_broken_file_fixed_keystroke_by_keystroke(client: LanguageClient, workspace):
    """Each keystroke is an edit of a range (the server syncs incrementally). The file starts
    without its required `target`; then a statement is typed after a non-ASCII string on one
    line, which checks the UTF-16 columns of both the edits and the diagnostics."""
    path = workspace / "quickstart.sprs"
    good = path.read_text().replace("  train {", '  output { dir "runs/é😀"; plots true }\n  train {', 1)
    first, second = "target 90%", "plots true"
    text = good.replace(first, "", 1).replace(second, "", 1)
    uri = await open_doc(client, path, text)
    seen = [{d.code for d in client.diagnostics[uri]}]
    version = 1

    async def type_at(anchor, typed):
        nonlocal text, version
        at = text.index(anchor)
        for ch in typed:
            version += 1
            p = pos_of(text, anchor)
            client.text_document_did_change(
                t.DidChangeTextDocumentParams(
                    text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[t.TextDocumentContentChangePartial(range=t.Range(start=p, end=p), text=ch)],
                )
            )
            text = text[:at] + ch + text[at:]
            at += 1
            anchor = text[at : at + 12]
            seen.append({d.code for d in await wait_published(client, uri, version)})

    await type_at("\n    distribution", first)
    assert "E0104" in seen[0], f"the file without `target` has an error: {seen[0]}"
    assert "E0101" in seen[3], f"`tar` is an unknown keyword: {seen}"
    assert seen[-1] == set(), f"with its target the file is clean: {seen}"
    await type_at(" }\n  train {", "p")
    d = client.diagnostics[uri]
    assert [x.code for x in d] == ["E0101"] and d[0].range.start == pos_of(text, "p }"), d
    await type_at(" }\n  train {", second[1:])
    assert seen[-1] == set(), f"the fixed file is clean: {seen}"
    # The server's text is the file as typed: the formatter has nothing to change.
    assert text == good
    edits = await client.text_document_formatting_async(
        t.DocumentFormattingParams(
            text_document=t.TextDocumentIdentifier(uri=uri), options=t.FormattingOptions(tab_size=2, insert_spaces=True)
        )
    )
    assert not edits


async def test_latency_of_diagnostics_on_the_largest_recipe(client: LanguageClient, workspace):
    largest = max((ROOT / "recipes").glob("*.sprs"), key=lambda p: p.stat().st_size)
    path = workspace / largest.name
    text = largest.read_text()
    path.write_text(text)
    uri = await open_doc(client, path)
    times = []
    for v in range(2, 32):
        edited = text + ("\n" if v % 2 else "\n// edit\n")
        start = time.perf_counter()
        await change(client, uri, v, edited)
        await wait_published(client, uri, v)
        times.append((time.perf_counter() - start) * 1000)
    report = (
        f"diagnostics latency on {largest.name} ({len(text)} bytes), 30 changes: "
        f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
    )
    print(report, file=sys.stderr)
    from conftest import LATENCY_FILE

    LATENCY_FILE.write_text(report + "\n")


# ---------------------------------------------------------------- hover


async def hover(client, uri, text, needle, delta=0):
    return await client.text_document_hover_async(
        t.HoverParams(text_document=t.TextDocumentIdentifier(uri=uri), position=pos_of(text, needle, delta))
    )


async def test_hover_keywords_values_models_sparsity_and_codes(client: LanguageClient, workspace):
    path = workspace / "quickstart.sprs"
    text = path.read_text()
    uri = await open_doc(client, path)
    assert "fraction of zeros" in hover_text(await hover(client, uri, text, "target 90%", 1))
    model = hover_text(await hover(client, uri, text, "model lenet300_100", 8))
    assert "784-300-100-10" in model and "fc1" in model and "784 -> 300" in model
    sparsity = hover_text(await hover(client, uri, text, "sparsity {", 1))
    assert "Per-layer targets" in sparsity and "fc1.weight" in sparsity and "masked target 90%" in sparsity
    assert "235200 values" in sparsity  # 300x784
    assert "step(at:" in hover_text(await hover(client, uri, text, "lr cosine", 4))
    opt = hover_text(await hover(client, uri, text, "momentum", 1))
    assert "argument `momentum`" in opt and "sgd(" in opt
    # A diagnostic code's explanation.
    bad = text.replace("target 90%", "target 190%")
    await change(client, uri, 2, bad)
    code = (await wait_published(client, uri, 2))[0].code
    h = hover_text(await hover(client, uri, bad, "190%", 1))
    assert code in h
    # A code written in a comment.
    commented = bad + "// see E0204\n"
    await change(client, uri, 3, commented)
    await wait_published(client, uri, 3)
    assert "E0204" in hover_text(await hover(client, uri, commented, "E0204", 2))


# ---------------------------------------------------------------- completion


async def complete(client, uri, text, needle, delta=0):
    return await client.text_document_completion_async(
        t.CompletionParams(text_document=t.TextDocumentIdentifier(uri=uri), position=pos_of(text, needle, delta))
    )


async def test_completion(client: LanguageClient, workspace):
    path = workspace / "quickstart.sprs"
    text = path.read_text()
    uri = await open_doc(client, path)
    # Statement keywords of the block at the cursor.
    at = text.index("    target")
    edited = text[:at] + "    \n" + text[at:]
    await change(client, uri, 2, edited)
    await wait_published(client, uri, 2)
    got = labels(await complete(client, uri, edited, "    \n", 4))
    assert {"target", "mask", "schedule", "update"} <= got and "epochs" not in got
    # Values: mask methods after `mask `.
    edited2 = text[:at] + "    mask \n" + text[at:]
    await change(client, uri, 3, edited2)
    await wait_published(client, uri, 3)
    assert {"magnitude", "snip", "lottery"} <= labels(await complete(client, uri, edited2, "mask \n", 5))
    await change(client, uri, 4, text)
    await wait_published(client, uri, 4)
    # Argument names of the call being written.
    assert {"lr", "momentum", "nesterov"} <= labels(await complete(client, uri, text, "sgd(", 4))
    # Zoo names after `model`, data sets after `data`.
    assert {"resnet20", "vgg16"} <= labels(await complete(client, uri, text, "model ", 6))
    assert {"mnist", "cifar10"} <= labels(await complete(client, uri, text, "data ", 5))


async def test_completion_of_names(client: LanguageClient, workspace):
    path = workspace / "main.sprs"
    text = path.read_text()
    uri = await open_doc(client, path)
    # Layer names in `layer "..."` come from the resolved model.
    assert {"fc1", "fc2", "fc3"} <= labels(await complete(client, uri, text, 'layer "', 7))
    # Recipe names after `extends` and in a sweep's `recipes [...]`.
    assert "base" in labels(await complete(client, uri, text, "extends ", 8))
    assert {"base", "child"} <= labels(await complete(client, uri, text, "recipes [", 9))
    # Field paths after `vary`.
    assert {"sparsity.target", "train.optimizer.lr"} <= labels(await complete(client, uri, text, "vary ", 5))
    # Selectors and layer names in `dense [...]`.
    edited = text.replace('    layer "fc1" 95%\n', '    layer "fc1" 95%\n    dense []\n')
    await change(client, uri, 2, edited)
    await wait_published(client, uri, 2)
    assert {"first", "last", '"fc2"'} <= labels(await complete(client, uri, edited, "dense [", 7))
    await change(client, uri, 3, text)
    await wait_published(client, uri, 3)
    # Kernels as the value of `kernel:`.
    assert {"firm", "soft_threshold"} <= labels(await complete(client, uri, text, "kernel: ", 8))


# ---------------------------------------------------------------- definition


async def definition(client, uri, text, needle, delta=0):
    loc = await client.text_document_definition_async(
        t.DefinitionParams(text_document=t.TextDocumentIdentifier(uri=uri), position=pos_of(text, needle, delta))
    )
    return loc[0] if isinstance(loc, list) else loc


async def test_go_to_definition(client: LanguageClient, workspace):
    path = workspace / "main.sprs"
    text = path.read_text()
    uri = await open_doc(client, path)
    common = (workspace / "common.sprs").as_uri()
    loc = await definition(client, uri, text, "extends base", 9)
    assert loc.uri == common and loc.range.start.line == 3
    loc = await definition(client, uri, text, '"common.sprs"', 2)
    assert loc.uri == common
    loc = await definition(client, uri, text, "[base, child]", 8)
    assert loc.uri == uri and loc.range.start.line == 2
    loc = await definition(client, uri, text, "kernel: firm", 9)
    assert loc.uri == common and loc.range.start.line == 1
    # A built-in kernel: the prelude.
    loc = await definition(client, uri, text, "soft_threshold(", 2)
    assert loc.uri.endswith("/src/prelude.sprs")


# ---------------------------------------------------------------- symbols


async def test_document_symbols(client: LanguageClient, workspace):
    uri = await open_doc(client, workspace / "main.sprs")
    syms = await client.text_document_document_symbol_async(
        t.DocumentSymbolParams(text_document=t.TextDocumentIdentifier(uri=uri))
    )
    assert [(s.name, s.kind) for s in syms] == [("child", t.SymbolKind.Class), ("grid", t.SymbolKind.Namespace)]
    assert syms[0].detail == "recipe extends base"
    # The statements of each block, for the outline.
    assert [c.name for c in syms[0].children] == ["sparsity"]
    assert [c.name for c in syms[1].children] == ["recipes", "vary"]


async def test_workspace_symbols(client: LanguageClient, workspace):
    await open_doc(client, workspace / "main.sprs")
    syms = await client.workspace_symbol_async(t.WorkspaceSymbolParams(query=""))
    names = {s.name for s in syms}
    assert {"base", "child", "grid", "firm", "quickstart"} <= names
    syms = await client.workspace_symbol_async(t.WorkspaceSymbolParams(query="chi"))
    assert [s.name for s in syms] == ["child"]


# ---------------------------------------------------------------- formatting


async def test_formatting_is_sprsc_fmt(client: LanguageClient, workspace):
    path = workspace / "messy.sprs"
    messy = "// top\nrecipe   a {seed 0;data synthetic_digits( train:600 )   // the data\n  model lenet300_100\ntrain{epochs 1}\n}\n"
    path.write_text(messy)
    uri = await open_doc(client, path)
    edits = await client.text_document_formatting_async(
        t.DocumentFormattingParams(
            text_document=t.TextDocumentIdentifier(uri=uri), options=t.FormattingOptions(tab_size=2, insert_spaces=True)
        )
    )
    assert len(edits) == 1
    subprocess.run([SPRSC, "fmt", str(path)], check=True)
    assert edits[0].new_text == path.read_text()
    assert "// the data" in edits[0].new_text and "// top" in edits[0].new_text


# ---------------------------------------------------------------- positions and robustness


async def test_utf16_positions_with_non_ascii_text(client: LanguageClient, workspace):
    path = workspace / "quickstart.sprs"
    text = path.read_text().replace("synthetic_digits(", 'synthetic_digits(path: "dä😀ta", vall: 1, ', 1)
    uri = await open_doc(client, path, text)
    d = [d for d in client.diagnostics[uri] if "vall" in d.message]
    assert d, client.diagnostics[uri]
    assert d[0].range.start == pos_of(text, "vall")
    assert d[0].range.end == pos_of(text, "vall", 4)
    # Hover on a word after the emoji lands on that word.
    h = hover_text(await hover(client, uri, text, "vall", 2))
    assert "vall" in h or "E0" in h


async def test_server_survives_any_text(client: LanguageClient, workspace):
    rng = random.Random(7)
    corpus = [p.read_text() for p in (ROOT / "recipes").glob("*.sprs")]
    corpus += [p.read_text() for p in sorted((ROOT / "tests" / "ui").glob("*.sprs"))[:20]]
    tokens = ["{", "}", "(", ")", "[", "]", ",", ":", ";", "\n", "..", "%", '"', "//", "é", "😀", "1e999", "extends", "use"]
    path = workspace / "fuzz.sprs"
    uri = await open_doc(client, path, "")
    for v in range(2, 202):
        s = rng.choice(corpus)
        for _ in range(rng.randrange(1, 5)):
            at = rng.randrange(0, len(s) + 1)
            op = rng.randrange(3)
            if op == 0:
                s = s[:at]
            elif op == 1:
                s = s[:at] + rng.choice(tokens) + s[at:]
            else:
                s = s[:at] + s[at + rng.randrange(0, 20) :]
        await change(client, uri, v, s)
        await wait_published(client, uri, v)
        if v % 20 == 0:
            p = t.Position(line=rng.randrange(0, s.count("\n") + 2), character=rng.randrange(0, 40))
            doc = t.TextDocumentIdentifier(uri=uri)
            await client.text_document_hover_async(t.HoverParams(text_document=doc, position=p))
            await client.text_document_completion_async(t.CompletionParams(text_document=doc, position=p))
            await client.text_document_definition_async(t.DefinitionParams(text_document=doc, position=p))
    # Still answering.
    syms = await client.text_document_document_symbol_async(
        t.DocumentSymbolParams(text_document=t.TextDocumentIdentifier(uri=uri))
    )
    assert syms is not None
