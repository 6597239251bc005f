// The TextMate grammar, tokenized by VS Code's own engine (vscode-textmate + vscode-oniguruma),
// gives the expected scopes on sample recipes. Run: NODE_PATH=<dir with both packages> node --test
const test = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const path = require("node:path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const root = path.join(__dirname, "..", "..");
const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer;

async function grammar() {
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (s) => new oniguruma.OnigScanner(s),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async () => {
      const file = path.join(root, "editors/vscode/syntaxes/sprs.tmLanguage.json");
      return vsctm.parseRawGrammar(fs.readFileSync(file, "utf8"), file);
    },
  });
  return registry.loadGrammar("source.sprs");
}

// Every token of a text as [text, innermost scope].
function tokenize(g, text) {
  let stack = vsctm.INITIAL;
  const out = [];
  for (const line of text.split("\n")) {
    const r = g.tokenizeLine(line, stack);
    for (const t of r.tokens) {
      out.push([line.slice(t.startIndex, t.endIndex), t.scopes[t.scopes.length - 1]]);
    }
    stack = r.ruleStack;
  }
  return out;
}

function scopeOf(tokens, text) {
  const found = tokens.find(([t]) => t.trim() === text);
  assert.ok(found, `no token ${JSON.stringify(text)} in ${JSON.stringify(tokens)}`);
  return found[1];
}

const gPromise = grammar();

test("items, names and comments", async () => {
  const g = await gPromise;
  const text = fs.readFileSync(path.join(root, "recipes/east_resnet34.sprs"), "utf8");
  const t = tokenize(g, text);
  assert.strictEqual(scopeOf(t, "recipe"), "storage.type.recipe.sprs");
  assert.strictEqual(scopeOf(t, "east_resnet34_999"), "entity.name.type.recipe.sprs");
  assert.strictEqual(scopeOf(t, "extends"), "keyword.other.extends.sprs");
  assert.strictEqual(scopeOf(t, "// as ES2's training loop"), "comment.line.double-slash.sprs");
  assert.ok(t.some(([x, s]) => x.startsWith("// EAST") && s === "comment.line.double-slash.sprs"));
});

test("statements, calls, arguments and values", async () => {
  const g = await gPromise;
  const text = fs.readFileSync(path.join(root, "recipes/east_resnet34.sprs"), "utf8");
  const t = tokenize(g, text);
  assert.strictEqual(scopeOf(t, "sparsity"), "keyword.other.statement.sprs");
  assert.strictEqual(scopeOf(t, "schedule"), "keyword.other.statement.sprs");
  assert.strictEqual(scopeOf(t, "cyclic"), "entity.name.function.call.sprs");
  assert.strictEqual(scopeOf(t, "momentum"), "variable.parameter.argument.sprs");
  assert.strictEqual(scopeOf(t, "99.9%"), "constant.numeric.percent.sprs");
  assert.strictEqual(scopeOf(t, "80 epochs"), "constant.numeric.duration.sprs");
  assert.strictEqual(scopeOf(t, "3x"), "constant.numeric.multiplier.sprs");
  assert.strictEqual(scopeOf(t, "5e-4"), "constant.numeric.sprs");
  assert.strictEqual(scopeOf(t, ".."), "keyword.operator.range.sprs");
});

test("one-line blocks, shapes, strings, kernels and paths", async () => {
  const g = await gPromise;
  const text = [
    'use "common.sprs"',
    "kernel half(w; tau) = select(abs(w) > tau, w * 0.5, 0)",
    'recipe a extends b { sparsity { target 99% } }',
    "recipe c {",
    "  model {",
    "    input 1x28x28",
    '    conv 20 kernel: 5 name: "st\\"em"',
    "  }",
    "  output { plots false }",
    "}",
    "sweep s {",
    "  vary train.optimizer.lr [0.1, 0.05]",
    "}",
  ].join("\n");
  const t = tokenize(g, text);
  assert.strictEqual(scopeOf(t, "use"), "keyword.control.import.sprs");
  assert.strictEqual(scopeOf(t, "common.sprs"), "string.quoted.double.sprs");
  assert.strictEqual(scopeOf(t, "kernel"), "storage.type.kernel.sprs");
  assert.strictEqual(scopeOf(t, "half"), "entity.name.function.kernel.sprs");
  assert.strictEqual(scopeOf(t, "select"), "entity.name.function.call.sprs");
  assert.strictEqual(scopeOf(t, ">"), "keyword.operator.sprs");
  assert.strictEqual(scopeOf(t, "b"), "entity.other.inherited-class.sprs");
  assert.strictEqual(scopeOf(t, "target"), "keyword.other.statement.sprs");
  assert.strictEqual(scopeOf(t, "1x28x28"), "constant.numeric.shape.sprs");
  assert.strictEqual(scopeOf(t, "conv"), "keyword.other.statement.sprs");
  assert.strictEqual(scopeOf(t, '\\"'), "constant.character.escape.sprs");
  assert.strictEqual(scopeOf(t, "false"), "constant.language.boolean.sprs");
  assert.strictEqual(scopeOf(t, "sweep"), "storage.type.sweep.sprs");
  assert.strictEqual(scopeOf(t, "train.optimizer.lr"), "variable.other.field-path.sprs");
});

test("every shipped recipe tokenizes with comments and strings closed on their line", async () => {
  const g = await gPromise;
  for (const f of fs.readdirSync(path.join(root, "recipes"))) {
    const text = fs.readFileSync(path.join(root, "recipes", f), "utf8");
    let stack = vsctm.INITIAL;
    for (const line of text.split("\n")) {
      stack = g.tokenizeLine(line, stack).ruleStack;
      // Nothing but the kernel rule (closed at end of line) may stay open across lines.
      assert.strictEqual(stack.depth, 1, `${f}: a rule stays open after ${JSON.stringify(line)}`);
    }
  }
});
