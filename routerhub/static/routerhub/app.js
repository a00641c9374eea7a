// Small progressive enhancements; every page works without JavaScript.
document.addEventListener("click", async (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const text = document.getElementById(copy.dataset.copy).textContent.trim();
    try { await navigator.clipboard.writeText(text); } catch (e) { /* clipboard blocked */ }
    copy.textContent = "Copied";
    copy.dataset.copied = "1";
  }
});
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
document.querySelectorAll("[data-tabs]").forEach((tabs) => {
  const buttons = tabs.querySelectorAll("[role=tab]");
  buttons.forEach((button) => button.addEventListener("click", () => {
    buttons.forEach((b) => {
      const selected = b === button;
      b.setAttribute("aria-selected", String(selected));
      document.getElementById(b.getAttribute("aria-controls")).hidden = !selected;
    });
  }));
});
// A page waiting on the server (a generation being recorded) reloads itself.
document.querySelectorAll("[data-refresh-after]").forEach((element) => {
  setTimeout(() => window.location.reload(), Number(element.dataset.refreshAfter) * 1000);
});
// The small-screen menu button shows and hides the navigation.
document.querySelectorAll("[data-menu-toggle]").forEach((button) => {
  const menu = document.getElementById(button.getAttribute("aria-controls"));
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    menu.classList.toggle("open", open);
  });
});
// A select marked data-autosubmit sends its form when changed (a <noscript> button otherwise).
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});
