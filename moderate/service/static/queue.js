// The queue page: `n` opens the next item to look at (viewing does not claim it).
document.addEventListener('keydown', (e) => {
  if (e.key === 'n' && !['TEXTAREA', 'INPUT', 'SELECT'].includes(e.target.tagName)) location = '/ui/next';
});
