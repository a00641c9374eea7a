// Loaded in <head>, before the page is drawn: styles that depend on JavaScript (the small-screen
// menu) apply from the first paint. A file, not an inline script: the Content-Security-Policy
// allows scripts from this site only.
document.documentElement.classList.add("js");
