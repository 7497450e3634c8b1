"""CSS and the one piece of JavaScript (citation chip -> source card) of the web app."""

CSS = """
.gradio-container { max-width: 1680px !important; }
#status > div, #status .prose { display: flex; align-items: center; gap: 18px; }
#app-title { display: flex; flex-direction: column; margin: 0; flex: none; }
#app-title h1 { font-size: 1.3rem; margin: 0; line-height: 1.2; }
#app-title .sub { color: var(--body-text-color-subdued); font-size: 0.78rem; }
#new-chat, #stop, #send { white-space: nowrap; }
#status-line { font-size: 0.8rem; line-height: 1.45; padding: 6px 10px; border-radius: 8px; flex: 1;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
#status .dot { font-weight: 700; margin-right: 4px; }
#status.ready .dot, #status .dot.ready { color: #15803d; }
#status .dot.starting { color: #b45309; }
#status .dot.failed { color: #b91c1c; }
#status .k { color: var(--body-text-color-subdued); }
#status code { font-size: 0.78rem; }
#filters { gap: 8px; }
#filters > * { min-width: 110px !important; }

/* chat */
#chat .message-wrap .answer-meta { font-size: 0.78rem; color: var(--body-text-color-subdued); margin-top: 2px; }
#chat .answer-meta.status { font-style: italic; }
.spin { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 6px; vertical-align: -0.1em;
  border: 2px solid #93c5fd; border-top-color: #1d4ed8; border-radius: 50%; animation: spin 0.9s linear infinite; }
@keyframes spin { to { transform: rotate(360deg); } }
#chat .answer-notice { color: #92400e; }
#chat .answer-error { color: #b91c1c; font-size: 0.9rem; }
a.cite, #chat a.cite { display: inline-block; min-width: 1.25em; padding: 0 0.38em; margin: 0 1px;
  border-radius: 999px; background: #dbeafe; color: #1e40af !important; font-size: 0.74em; font-weight: 650;
  line-height: 1.45; text-align: center; text-decoration: none !important; vertical-align: 0.18em; cursor: pointer;
  border: 1px solid #93c5fd; }
a.cite:hover { background: #1d4ed8; color: #fff !important; }
#chat table { font-size: 0.86rem; }
#chats-row { gap: 8px; align-items: center; }
#chats-note { font-size: 0.8rem; color: #92400e; min-height: 0; }
#answer-downloads { gap: 8px; }

/* sources panel */
#sources { max-height: calc(100vh - 270px); min-height: 420px; overflow-y: auto; padding-right: 4px;
  scroll-behavior: smooth; }
#sources h3 { margin: 0; font-size: 1.05rem; }
.sources-head { position: sticky; top: 0; z-index: 2; background: var(--background-fill-primary);
  padding: 2px 0 6px 0; border-bottom: 1px solid var(--border-color-primary); margin-bottom: 8px; }
.sources-q { font-size: 0.85rem; margin-top: 2px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.sources-count { font-size: 0.78rem; color: var(--body-text-color-subdued); }
.sources-empty { color: var(--body-text-color-subdued); font-size: 0.9rem; padding: 8px 2px; }
.sources-empty h3 { color: var(--body-text-color); margin-bottom: 6px; }
.sources-none { font-size: 0.88rem; color: var(--body-text-color-subdued); }
.src-card { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px;
  margin: 0 0 10px 0; background: var(--background-fill-primary); transition: box-shadow 0.3s, border-color 0.3s; }
.src-card.cited { border-left: 4px solid #3b82f6; }
.src-card.evidence { border-left: 4px solid #f59e0b; }
.answer-meta .path { font-weight: 600; }
.answer-meta .path.extractive { color: #b45309; }
.answer-meta .path.refused { color: #b91c1c; }
.src-card header { display: flex; gap: 8px; align-items: flex-start; }
.src-card h4 { margin: 0; font-size: 0.95rem; line-height: 1.3; }
.src-n { flex: none; display: inline-block; min-width: 1.6em; text-align: center; border-radius: 999px;
  background: #dbeafe; color: #1e40af; font-weight: 700; font-size: 0.8rem; padding: 1px 6px; }
.src-card:not(.cited) .src-n { background: var(--background-fill-secondary); color: var(--body-text-color-subdued); }
.src-meta { font-size: 0.8rem; color: var(--body-text-color-subdued); margin: 4px 0 6px 0; }
.tag { display: inline-block; padding: 0 6px; border-radius: 6px; font-size: 0.74rem; font-weight: 600;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.tag.code { background: #dcfce7; border-color: #86efac; color: #166534; }
.src-evidence-label { font-size: 0.72rem; color: #854d0e; margin-bottom: 2px; }
.src-abstract { font-size: 0.85rem; line-height: 1.5; margin: 0; }
.src-abstract mark { background: #fef08a; color: inherit; padding: 1px 2px; border-radius: 3px; }
.src-foot { font-size: 0.72rem; color: var(--body-text-color-subdued); margin-top: 6px; }
details.uncited > summary { cursor: pointer; font-size: 0.88rem; font-weight: 600; margin: 6px 0 8px 0; }
.src-card.flash { box-shadow: 0 0 0 3px #f59e0b; border-color: #f59e0b; }

/* corpus */
.paper-detail h3 { margin: 0 0 6px 0; font-size: 1.05rem; }
.paper-detail table { font-size: 0.82rem; margin-bottom: 8px; border-collapse: collapse; border: none; }
.paper-detail table, .paper-detail tr, .paper-detail th, .paper-detail td { border: none !important;
  background: none !important; }
.table-wrap span, .table-wrap td, .table-wrap th { font-family: var(--font) !important; }
.paper-detail th { text-align: left; padding: 2px 10px 2px 0; color: var(--body-text-color-subdued);
  font-weight: 600; vertical-align: top; white-space: nowrap; }
.paper-detail td { padding: 2px 0; }
#paper-detail { max-height: 620px; overflow-y: auto; }
#corpus-count { font-size: 0.85rem; color: var(--body-text-color-subdued); }
"""

JS = """
() => {
  if (window.__citeHandlerInstalled) return;
  window.__citeHandlerInstalled = true;
  const flash = (el) => {
    el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash');
    setTimeout(() => el.classList.remove('flash'), 2500);
  };
  const focusCard = (turn, n, tries) => {
    const el = document.getElementById(`src-${turn}-${n}`);
    if (el) {
      const det = el.closest('details'); if (det) det.open = true;
      const box = document.getElementById('sources');
      if (box && box.contains(el)) {  // scroll the panel, not the page, so the chat stays where it is
        const r = box.getBoundingClientRect();
        if (r.top < 0 || r.top > window.innerHeight - 120) box.scrollIntoView({block: 'start'});
        const head = box.querySelector('.sources-head');
        const top = el.getBoundingClientRect().top - box.getBoundingClientRect().top;
        box.scrollBy({top: top - (head ? head.offsetHeight : 0) - 6, behavior: 'smooth'});
      } else {
        el.scrollIntoView({behavior: 'smooth', block: 'nearest'});
      }
      flash(el);
      return;
    }
    if (tries === 0) {  // the panel shows another answer: ask the server for this one's sources
      const box = document.querySelector('#cite-target textarea, #cite-target input');
      const go = document.querySelector('#cite-go');
      if (box && go) {
        box.value = String(turn);
        box.dispatchEvent(new Event('input', {bubbles: true}));
        setTimeout(() => go.click(), 50);
      }
    }
    if (tries < 60) setTimeout(() => focusCard(turn, n, tries + 1), 100);
  };
  document.addEventListener('click', (e) => {
    const a = e.target && e.target.closest ? e.target.closest('a.cite, a[href^="#src-"]') : null;
    if (!a) return;
    e.preventDefault();
    e.stopPropagation();
    const m = (a.getAttribute('href') || '').match(/^#src-(\\d+)-(\\d+)$/);
    const turn = a.dataset.turn || (m && m[1]);
    const n = a.dataset.n || (m && m[2]);
    if (turn == null || n == null) return;
    focusCard(turn, n, 0);
  }, true);
}
"""
