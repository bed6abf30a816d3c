"""What serves the app, not the flow: background training jobs, the model list, picture input and the plotly
figures. Imports flow/ (never the reverse) and no Streamlit: the widgets are in ui/, the pages in app_pages/."""
