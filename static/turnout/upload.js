// Upload progress for forms marked data-upload, from htmx's XHR progress events.
(function () {
  "use strict";

  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload]") || !event.detail.lengthComputable) return;
    var box = form.querySelector(".upload-progress");
    var bar = box && box.querySelector("progress");
    if (!bar) return;
    box.hidden = false;
    bar.max = event.detail.total;
    bar.value = event.detail.loaded;
    var percent = box.querySelector("[data-upload-percent]");
    if (percent) percent.textContent = Math.floor((100 * event.detail.loaded) / event.detail.total) + "%";
  });

  // Saves sending a file the server will refuse anyway; the server checks again.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form.matches || !form.matches("form[data-upload]")) return;
    var input = form.querySelector("input[type=file]");
    var file = input && input.files && input.files[0];
    var limit = Number(form.dataset.maxBytes);
    var message = form.querySelector("[data-client-error]");
    if (message) message.hidden = true;
    if (file && limit && file.size > limit) {
      event.preventDefault();
      if (message) {
        message.textContent = "This file is " + file.size + " bytes, over the limit of " + limit + " bytes.";
        message.hidden = false;
      }
    }
  });

  // htmx does not swap error responses; the server answers 413 with the form and
  // the limit next to the file field, which is worth showing.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = event.detail.elt;
    var ours = String(event.detail.serverResponse).indexOf("data-upload") !== -1; // not a proxy's page
    if (event.detail.xhr.status === 413 && ours && form.matches && form.matches("form[data-upload]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
