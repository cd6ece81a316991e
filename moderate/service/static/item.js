// The item page: reveal/re-blur, decisions with an undo window, claim, skip. Keys: v k c r u n.
(() => {
  const page = document.querySelector('.item-page');
  const image = document.getElementById('image');
  const form = document.getElementById('decide');
  const pending = document.getElementById('pending');
  const undoSeconds = Number(page.dataset.undo || 5);
  let timer = null;

  function toggle() {
    if (!image) return;
    image.classList.toggle('shield');
    const button = document.getElementById('reveal');
    if (button) button.textContent = image.classList.contains('shield') ? 'Reveal' : 'Blur again';
  }
  function post(action) { document.querySelector(`form[action$="/${action}"]`)?.submit(); }
  // A decision waits out the undo window before it is sent; undo cancels it. Leaving the page sends it.
  function decide(kind) {
    if (!form || timer) return;
    document.getElementById('decision').value = kind;
    const bank = document.getElementById('bank').value;
    document.getElementById('pending-text').textContent =
      `${kind === 'confirm' ? 'Confirming' : 'Rejecting'}${bank && kind === 'confirm' ? ' into ' + bank : ''} in ${undoSeconds} s`;
    pending.hidden = false;
    timer = setTimeout(send, undoSeconds * 1000);
  }
  function send() { timer = null; window.removeEventListener('pagehide', flush); form.submit(); }
  function undo() { if (!timer) return; clearTimeout(timer); timer = null; pending.hidden = true; }
  function flush() { if (timer) { clearTimeout(timer); navigator.sendBeacon(form.action, new FormData(form)); } }
  window.addEventListener('pagehide', flush);

  document.getElementById('reveal')?.addEventListener('click', toggle);
  image?.addEventListener('click', toggle);
  document.getElementById('confirm')?.addEventListener('click', () => decide('confirm'));
  document.getElementById('reject')?.addEventListener('click', () => decide('reject'));
  document.getElementById('undo')?.addEventListener('click', undo);
  document.addEventListener('keydown', (e) => {
    if (['TEXTAREA', 'INPUT', 'SELECT'].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
    const act = {v: toggle, c: () => decide('confirm'), r: () => decide('reject'), u: undo,
                 k: () => post('claim'), n: () => post('skip')}[e.key];
    if (act) { e.preventDefault(); act(); }
  });
})();
