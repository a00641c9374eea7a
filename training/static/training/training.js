// Training pages: upload progress (XMLHttpRequest to the API) and live polling. Every page
// also works without JavaScript through plain form posts and refresh links.
(function () {
  "use strict";

  function csrfToken(form) {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function errorMessage(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON */ }
    return "Upload failed (HTTP " + xhr.status + ").";
  }

  const uploadForm = document.querySelector("form[data-upload-api]");
  if (uploadForm && window.FormData && window.XMLHttpRequest) {
    uploadForm.addEventListener("submit", function (event) {
      event.preventDefault();
      const box = uploadForm.querySelector(".upload-progress");
      const bar = box.querySelector(".progress > div");
      const status = box.querySelector(".upload-status");
      const error = uploadForm.querySelector(".upload-error");
      const data = new FormData(uploadForm);
      data.delete("csrfmiddlewaretoken");
      // The API parses a multipart "columns" field as JSON: an empty one is not valid JSON.
      if (!String(data.get("columns") || "").trim()) data.delete("columns");
      const maximize = uploadForm.querySelector("input[name=maximize]");
      data.set("maximize", maximize && maximize.checked ? "true" : "false");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", uploadForm.dataset.uploadApi);
      xhr.setRequestHeader("X-CSRFToken", csrfToken(uploadForm));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        const percent = Math.round((e.loaded / e.total) * 100);
        bar.style.width = percent + "%";
        bar.parentElement.setAttribute("aria-valuenow", String(percent));
        status.textContent = "Uploading… " + percent + "%";
      });
      xhr.addEventListener("load", function () {
        if (xhr.status === 201) {
          status.textContent = "Uploaded; validating…";
          window.location.href = uploadForm.dataset.detailUrl + JSON.parse(xhr.responseText).id + "/";
        } else {
          box.hidden = true;
          error.textContent = errorMessage(xhr);
          error.hidden = false;
        }
      });
      xhr.addEventListener("error", function () {
        box.hidden = true;
        error.textContent = "The upload was interrupted; check your connection and try again.";
        error.hidden = false;
      });
      error.hidden = true;
      box.hidden = false;
      xhr.send(data);
    });
  }

  function poll(url, onData, intervalMs) {
    let stopped = false;
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && onData(data) === false) stopped = true;
        })
        .catch(function () { /* transient; try again */ })
        .finally(function () { if (!stopped) window.setTimeout(tick, intervalMs); });
    }
    window.setTimeout(tick, intervalMs);
  }

  const datasetCard = document.querySelector("[data-poll-dataset]");
  if (datasetCard) {
    poll(datasetCard.dataset.pollDataset, function (data) {
      if (data.status !== "validating") { window.location.reload(); return false; }
      return true;
    }, 1000);
  }

  const runCard = document.querySelector("[data-poll-run]");
  if (runCard && !runCard.dataset.finished) {
    const bar = runCard.querySelector("[data-run-bar]");
    const labels = JSON.parse(document.getElementById("run-stage-labels").textContent);
    poll(runCard.dataset.pollRun, function (run) {
      const percent = Math.round(run.progress * 100);
      bar.style.width = percent + "%";
      bar.parentElement.setAttribute("aria-valuenow", String(percent));
      runCard.querySelector("[data-run-percent]").textContent = String(percent);
      runCard.querySelector("[data-run-stage]").textContent = labels[run.stage] || run.stage;
      document.querySelectorAll("[data-run-status]").forEach(function (el) { el.textContent = run.status; });
      const error = runCard.querySelector("[data-run-error]");
      error.textContent = run.error || "";
      error.hidden = !run.error;
      if (["succeeded", "failed", "cancelled"].indexOf(run.status) >= 0) {
        window.location.reload();
        return false;
      }
      return true;
    }, 1000);
  }
})();
