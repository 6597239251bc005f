//! `sprsc lsp`: the language server, over stdio with `lsp-server` (the JSON-RPC transport) and
//! `lsp-types` (the protocol's types). In: the editor's documents. Out: diagnostics exactly as
//! `sprsc check` reports them, hover, completion, definitions, symbols and formatting.
//!
//! Documents are synchronised by edits (or whole texts); a recipe is a few kilobytes and
//! compiles in about a millisecond, so every change recompiles each open document, so files that `use` the changed one are
//! re-published too. Positions are UTF-16, the protocol's default. A panic while handling one
//! message is caught and answered as an error; the server keeps serving.

mod analysis;
mod complete;
mod context;
mod features;
mod pos;
mod vocab;

pub use analysis::compile as compile_with_overlay;
pub use vocab::{ARGS, BLOCKS, VALUES};

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lt;
use lsp_types::notification::{self as notif, Notification as _};
use lsp_types::request::{self as req, Request as _};

use crate::Compilation;

/// An open document and what the last compilation made of it.
pub struct Doc {
    pub uri: lt::Uri,
    pub path: PathBuf,
    pub text: String,
    pub version: i32,
    pub diagnostics: Vec<lt::Diagnostic>,
    /// The last compilation that parsed (for layer tables, plans and names while typing).
    pub parsed: Option<Compilation>,
}

pub struct Server {
    pub docs: HashMap<String, Doc>,
    /// Workspace folders, for workspace symbols.
    pub roots: Vec<PathBuf>,
}

/// Serves on stdin/stdout until the client says `exit`. Returns the process exit code.
pub fn serve() -> i32 {
    let (conn, io) = Connection::stdio();
    let code = match run(&conn) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sprsc lsp: {e}");
            1
        }
    };
    drop(conn);
    let _ = io.join();
    code
}

pub fn capabilities() -> lt::ServerCapabilities {
    lt::ServerCapabilities {
        position_encoding: Some(lt::PositionEncodingKind::UTF16),
        text_document_sync: Some(lt::TextDocumentSyncCapability::Options(lt::TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(lt::TextDocumentSyncKind::INCREMENTAL),
            save: Some(lt::TextDocumentSyncSaveOptions::Supported(true)),
            ..Default::default()
        })),
        hover_provider: Some(lt::HoverProviderCapability::Simple(true)),
        completion_provider: Some(lt::CompletionOptions {
            trigger_characters: Some(vec![" ".into(), "(".into(), ":".into(), "\"".into(), "[".into(), ".".into()]),
            ..Default::default()
        }),
        definition_provider: Some(lt::OneOf::Left(true)),
        document_symbol_provider: Some(lt::OneOf::Left(true)),
        workspace_symbol_provider: Some(lt::OneOf::Left(true)),
        document_formatting_provider: Some(lt::OneOf::Left(true)),
        ..Default::default()
    }
}

fn run(conn: &Connection) -> Result<(), Box<dyn std::error::Error + Sync + Send>> {
    let caps = serde_json::to_value(capabilities())?;
    let init = conn.initialize(caps)?;
    let init: lt::InitializeParams = serde_json::from_value(init).unwrap_or_default();
    let mut server = Server { docs: HashMap::new(), roots: roots(&init) };
    for msg in &conn.receiver {
        match msg {
            Message::Request(r) => {
                if conn.handle_shutdown(&r)? {
                    return Ok(());
                }
                let id = r.id.clone();
                let resp = match std::panic::catch_unwind(AssertUnwindSafe(|| server.request(r))) {
                    Ok(resp) => resp,
                    Err(_) => {
                        Response::new_err(id, ErrorCode::InternalError as i32, "sprsc lsp: internal error".into())
                    }
                };
                conn.sender.send(Message::Response(resp))?;
            }
            Message::Notification(n) => {
                let out = std::panic::catch_unwind(AssertUnwindSafe(|| server.notification(n))).unwrap_or_default();
                for m in out {
                    conn.sender.send(m)?;
                }
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

#[allow(deprecated)] // root_uri: older clients send only that
fn roots(init: &lt::InitializeParams) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        init.workspace_folders.iter().flatten().filter_map(|f| pos::uri_to_path(&f.uri)).collect();
    if out.is_empty() {
        out.extend(init.root_uri.as_ref().and_then(pos::uri_to_path));
    }
    out
}

fn params<P: serde::de::DeserializeOwned>(v: serde_json::Value) -> Option<P> {
    serde_json::from_value(v).ok()
}

impl Server {
    /// Handles a notification; returns the messages to send (published diagnostics).
    pub fn notification(&mut self, n: Notification) -> Vec<Message> {
        match n.method.as_str() {
            notif::DidOpenTextDocument::METHOD => {
                let Some(p) = params::<lt::DidOpenTextDocumentParams>(n.params) else { return vec![] };
                let d = p.text_document;
                let path = pos::uri_to_path(&d.uri).unwrap_or_else(|| PathBuf::from("untitled.sprs"));
                let doc = Doc {
                    uri: d.uri.clone(),
                    path,
                    text: d.text,
                    version: d.version,
                    diagnostics: vec![],
                    parsed: None,
                };
                self.docs.insert(d.uri.as_str().to_string(), doc);
                self.recompile(d.uri.as_str())
            }
            notif::DidChangeTextDocument::METHOD => {
                let Some(p) = params::<lt::DidChangeTextDocumentParams>(n.params) else { return vec![] };
                let Some(doc) = self.docs.get_mut(p.text_document.uri.as_str()) else { return vec![] };
                for change in p.content_changes {
                    match change.range {
                        // An edit of a range (a keystroke), in UTF-16 positions of the text so far.
                        Some(r) => {
                            let idx = pos::LineIndex::new(&doc.text);
                            let (s, e) = (idx.offset(&doc.text, r.start), idx.offset(&doc.text, r.end));
                            doc.text.replace_range(s..e.max(s), &change.text);
                        }
                        None => doc.text = change.text,
                    }
                }
                doc.version = p.text_document.version;
                self.recompile(p.text_document.uri.as_str())
            }
            notif::DidSaveTextDocument::METHOD => {
                let Some(p) = params::<lt::DidSaveTextDocumentParams>(n.params) else { return vec![] };
                if let (Some(doc), Some(text)) = (self.docs.get_mut(p.text_document.uri.as_str()), p.text) {
                    doc.text = text;
                }
                self.recompile(p.text_document.uri.as_str())
            }
            notif::DidCloseTextDocument::METHOD => {
                let Some(p) = params::<lt::DidCloseTextDocumentParams>(n.params) else { return vec![] };
                self.docs.remove(p.text_document.uri.as_str());
                let clear =
                    lt::PublishDiagnosticsParams { uri: p.text_document.uri, diagnostics: vec![], version: None };
                let mut out = vec![Message::Notification(Notification::new(
                    notif::PublishDiagnostics::METHOD.to_string(),
                    clear,
                ))];
                out.extend(self.recompile(""));
                out
            }
            _ => vec![],
        }
    }

    /// Compiles every open document (with the others' unsaved texts) and publishes diagnostics,
    /// those of the document that changed (`first`) first.
    pub fn recompile(&mut self, first: &str) -> Vec<Message> {
        let overlay: analysis::Overlay = self.docs.values().map(|d| (d.path.clone(), d.text.clone())).collect();
        let mut out = Vec::new();
        let mut keys: Vec<String> = self.docs.keys().cloned().collect();
        keys.sort_by_key(|k| (k != first, k.clone()));
        for key in keys {
            let Some(doc) = self.docs.get_mut(&key) else { continue };
            let comp = analysis::compile(&doc.path, doc.text.clone(), &overlay);
            doc.diagnostics = analysis::lsp_diagnostics(&comp);
            if !comp.files.is_empty() && !comp.diagnostics.iter().any(|d| d.code.starts_with("E00")) {
                doc.parsed = Some(comp);
            }
            let p = lt::PublishDiagnosticsParams {
                uri: doc.uri.clone(),
                diagnostics: doc.diagnostics.clone(),
                version: Some(doc.version),
            };
            out.push(Message::Notification(Notification::new(notif::PublishDiagnostics::METHOD.to_string(), p)));
        }
        out
    }

    pub fn request(&mut self, r: Request) -> Response {
        let id = r.id.clone();
        let result = match r.method.as_str() {
            req::HoverRequest::METHOD => params::<lt::HoverParams>(r.params)
                .and_then(|p| {
                    let tp = p.text_document_position_params;
                    features::hover(self, self.docs.get(tp.text_document.uri.as_str())?, tp.position)
                })
                .map(|h| serde_json::to_value(h).unwrap_or_default()),
            req::Completion::METHOD => params::<lt::CompletionParams>(r.params).and_then(|p| {
                let tp = p.text_document_position;
                let items = complete::completion(self, self.docs.get(tp.text_document.uri.as_str())?, tp.position);
                serde_json::to_value(lt::CompletionResponse::Array(items)).ok()
            }),
            req::GotoDefinition::METHOD => params::<lt::GotoDefinitionParams>(r.params)
                .and_then(|p| {
                    let tp = p.text_document_position_params;
                    features::definition(self, self.docs.get(tp.text_document.uri.as_str())?, tp.position)
                })
                .map(|l| serde_json::to_value(lt::GotoDefinitionResponse::Scalar(l)).unwrap_or_default()),
            req::DocumentSymbolRequest::METHOD => params::<lt::DocumentSymbolParams>(r.params).and_then(|p| {
                let doc = self.docs.get(p.text_document.uri.as_str())?;
                serde_json::to_value(lt::DocumentSymbolResponse::Nested(features::document_symbols(doc))).ok()
            }),
            req::WorkspaceSymbolRequest::METHOD => params::<lt::WorkspaceSymbolParams>(r.params).and_then(|p| {
                let found = features::workspace_symbols(self, &p.query);
                serde_json::to_value(lt::WorkspaceSymbolResponse::Flat(found)).ok()
            }),
            req::Formatting::METHOD => params::<lt::DocumentFormattingParams>(r.params).and_then(|p| {
                let doc = self.docs.get(p.text_document.uri.as_str())?;
                serde_json::to_value(features::formatting(doc)).ok()
            }),
            _ => {
                return Response::new_err(id, ErrorCode::MethodNotFound as i32, format!("unknown method {}", r.method))
            }
        };
        Response::new_ok(id, result.unwrap_or(serde_json::Value::Null))
    }
}
