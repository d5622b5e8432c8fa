"""One module per screen, each an `APIRouter` the app includes."""
