// The console's small behaviours, as a file so the pages' Content-Security-Policy
// can forbid inline script: confirmations before destructive forms, and copy buttons.

// A form with data-confirm asks before it is sent. One with
// data-confirm-selected also needs at least one checked "ids" box, and its
// question gets the count in place of {n}.
document.addEventListener('submit', function (e) {
  var f = e.target;
  var ask = f.dataset.confirm;
  if (!ask) return;
  if (f.dataset.confirmSelected !== undefined) {
    var n = f.querySelectorAll('input[name=ids]:checked').length;
    if (!n) { alert(f.dataset.confirmSelected); e.preventDefault(); return; }
    ask = ask.replace('{n}', n);
  }
  if (!confirm(ask)) e.preventDefault();
});

// A button with data-copy="ID" copies the text of the element with that id.
document.addEventListener('click', function (e) {
  var b = e.target.closest('[data-copy]'); if (!b) return;
  var t = document.getElementById(b.dataset.copy).textContent;
  var done = function () { b.textContent = 'Copied'; setTimeout(function () { b.textContent = 'Copy'; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(t).then(done); }
  else { var a = document.createElement('textarea'); a.value = t; document.body.appendChild(a); a.select(); document.execCommand('copy'); a.remove(); done(); }
});
