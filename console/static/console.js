// Forms marked data-confirm ask before they are sent (no inline scripts: the CSP allows none).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});
