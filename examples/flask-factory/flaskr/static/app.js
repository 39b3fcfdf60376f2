// Keep the textarea handy: focus it on load and submit with Ctrl/Cmd+Enter.
document.addEventListener("DOMContentLoaded", () => {
  const body = document.getElementById("body");
  if (!body) return;
  body.focus();
  body.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      body.form.requestSubmit();
    }
  });
});
