// Starts `sprsc lsp` for .sprs files. The binary is `sprs.server.path` (default: `sprsc` on PATH).
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("sprs").get("server.path", "sprsc");
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "sprs",
    "sprsc language server",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "sprs" }, { scheme: "untitled", language: "sprs" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
